"""List, then watch from the list's resourceVersion: how every Kubernetes controller follows objects.

One loop for the operator's RecordFiles (`filewatch`) and, in the sandbox, its kubelet, the node
agent's scheduler and its provisioner. It hands each object to `on_object` (added or changed) or
`on_deleted`, lists in pages when asked (so that 100,000 objects are never held at once), relists after
a `410 Gone` or a broken stream (the Kubernetes API concepts doc: "Efficient detection of changes"),
and ends when `stop` is set — within `watch_seconds`, since the watch request itself is bounded by
`timeoutSeconds`.
"""

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import kube

logger = logging.getLogger(__name__)
WATCH_SECONDS = 1
# How often the operator's followers (`filewatch`, `podwatch`) renew a watch from its last
# resourceVersion, as client-go's reflectors do.
RENEW_SECONDS = 60
Handler = Callable[[dict[str, Any]], None]
# (namespace, name, uid) of every object a full listing held.
Listed = Callable[[list[tuple[str, str, str]]], None]


def follow(
    list_function: Callable[..., Any],
    on_object: Handler,
    on_deleted: Handler,
    stop: threading.Event,
    on_listed: Listed | None = None,
    *,
    page_size: int = 0,
    watch_seconds: int = WATCH_SECONDS,
    failures: int = logging.DEBUG,
    **selectors: Any,
) -> None:
    """Follow the objects `list_function` lists (a kubernetes client `list_*` method, its positional
    arguments bound) until `stop`.

    `on_listed` gets the identity of every object of a full listing (after a start or a relist), so
    that a caller can forget what disappeared while it was not watching. A handler's exception is
    logged, never fatal; a failed request is logged at level `failures` and retried a second later.
    """
    while not stop.is_set():
        try:
            version: str | None = _list(list_function, on_object, on_listed, page_size, selectors)
            while version is not None and not stop.is_set():
                version = _watch_once(
                    list_function, version, on_object, on_deleted, stop, watch_seconds, selectors
                )  # None: expired or broken, so list again
        except Exception as error:  # the API server may be starting, restarting or stopping
            logger.log(
                failures, "following %s failed: %s", getattr(list_function, "__name__", "objects"), error
            )
            stop.wait(1)


def follow_scope(
    scope: str | None,
    list_everywhere: Callable[..., Any],
    list_in_namespace: Callable[..., Any],
    on_object: Handler,
    on_deleted: Handler,
    stop: threading.Event,
    on_listed: Listed | None = None,
    **options: Any,
) -> None:
    """`follow` as the operator's followers do: the objects of one namespace (`list_in_namespace`,
    the namespace its first argument) or of all (`scope` None), the watch renewed every
    `RENEW_SECONDS`, a failed request logged as a warning."""
    list_function = list_everywhere if scope is None else functools.partial(list_in_namespace, scope)
    follow(
        list_function,
        on_object,
        on_deleted,
        stop,
        on_listed,
        watch_seconds=RENEW_SECONDS,
        failures=logging.WARNING,
        **options,
    )


def _list(
    list_function: Callable[..., Any],
    on_object: Handler,
    on_listed: Listed | None,
    page_size: int,
    selectors: dict[str, Any],
) -> str:
    """One full listing, a page at a time; its resourceVersion."""
    identities: list[tuple[str, str, str]] = []
    token, version = None, ""
    while True:
        paging = {"limit": page_size, "_continue": token} if page_size else {}
        body = kube.json_of(list_function(_preload_content=False, _request_timeout=30, **paging, **selectors))
        version = body["metadata"].get("resourceVersion") or version
        for item in body.get("items") or []:
            meta = item["metadata"]
            identities.append((meta.get("namespace", ""), meta["name"], meta.get("uid", "")))
            _safely(on_object, item)
        token = body["metadata"].get("continue")
        if not token:
            break
    if on_listed is not None:
        _safely(on_listed, identities)
    return version


def _watch_once(
    list_function: Callable[..., Any],
    version: str,
    on_object: Handler,
    on_deleted: Handler,
    stop: threading.Event,
    watch_seconds: int,
    selectors: dict[str, Any],
) -> str | None:
    """One watch request; the resourceVersion to go on from, or None to relist."""
    response = list_function(
        watch=True,
        resource_version=version,
        timeout_seconds=watch_seconds,
        allow_watch_bookmarks=True,
        _preload_content=False,
        _request_timeout=watch_seconds + 25,
        **selectors,
    )
    for event in _events(response):
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            return None  # 410 Gone: the version is too old
        version = obj.get("metadata", {}).get("resourceVersion") or version
        if kind == "DELETED":
            _safely(on_deleted, obj)
        elif kind in ("ADDED", "MODIFIED"):
            _safely(on_object, obj)
        if stop.is_set():
            break
    return version


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """The events of a watch response, one JSON object a line, as they arrive; the response is closed
    when the caller stops reading. (The client's own `Watch` builds a client per request, reads the
    stream into a buffer it copies after every line and decodes each line twice: most of a watching
    controller's cost, for the JSON alone that is needed here.)"""
    try:
        kube.succeeded(response)
        pending = b""
        for chunk in response.stream(amt=None, decode_content=False):
            pending += chunk
            if b"\n" not in chunk:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
    finally:
        response.close()
        response.release_conn()


def _safely(handler: Callable[[Any], None], argument: Any) -> None:
    try:
        handler(argument)
    except Exception:
        logger.exception("handling a watched object failed")
