"""List, then watch from the list's resourceVersion: how every Kubernetes controller follows objects.

One loop for the sandbox's kubelet, the node agent's scheduler and its provisioner. It hands each
object to `on_object` (added or changed) or `on_deleted`, relists after a `410 Gone` or a broken
stream (the Kubernetes API concepts doc: "Efficient detection of changes"), and ends when `stop` is
set — within `WATCH_SECONDS`, since the watch request itself is bounded by `timeoutSeconds`.
"""

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch

logger = logging.getLogger(__name__)
WATCH_SECONDS = 1
Handler = Callable[[dict[str, Any]], None]


def follow(
    list_function: Callable[..., Any],
    on_object: Handler,
    on_deleted: Handler,
    stop: threading.Event,
    on_listed: Callable[[list[dict[str, Any]]], None] | None = None,
    **selectors: str,
) -> None:
    """Follow the objects `list_function` lists (a kubernetes client `list_*` method) until `stop`.

    `on_listed` gets every full listing (after a start or a relist), so that a caller can forget
    what disappeared while it was not watching. A handler's exception is logged, never fatal.
    """
    while not stop.is_set():
        try:
            listing = list_function(_preload_content=False, **selectors, _request_timeout=30)
            body = _json(listing)
            version = body["metadata"]["resourceVersion"]
            items = body.get("items") or []
            if on_listed is not None:
                _safely(on_listed, items)
            for item in items:
                _safely(on_object, item)
            while not stop.is_set():
                version = _watch_once(list_function, version, on_object, on_deleted, stop, selectors)
                if version is None:
                    break  # expired or broken: relist
        except Exception as error:  # the API server may be starting, restarting or stopping
            logger.debug("following %s failed: %s", getattr(list_function, "__name__", "objects"), error)
            stop.wait(1)


def _watch_once(
    list_function: Callable[..., Any],
    version: str,
    on_object: Handler,
    on_deleted: Handler,
    stop: threading.Event,
    selectors: dict[str, str],
) -> str | None:
    """One watch request; the resourceVersion to go on from, or None to relist."""
    stream = watch.Watch().stream(
        list_function,
        resource_version=version,
        timeout_seconds=WATCH_SECONDS,
        allow_watch_bookmarks=True,
        _request_timeout=WATCH_SECONDS + 25,
        **selectors,
    )
    for event in stream:
        kind, obj = event["type"], event["raw_object"]
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


def _json(response: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(response.data))
    finally:
        response.release_conn()


def _safely(handler: Callable[[Any], None], argument: Any) -> None:
    try:
        handler(argument)
    except Exception:
        logger.exception("handling a watched object failed")
