"""
An embedded Kubernetes API server for tests and the no-cluster sandbox.

It is kmock's `KubernetesEmulator` (kmock==0.8) completed with what kopf, the kubernetes client and
`kubectl` rely on: metadata (uid, resourceVersion, generation, timestamps), status codes and `Status`
errors, the four PATCH content types, status subresources, label and field selectors, watches that
resume from a resourceVersion, finalizers, ownerReference garbage collection, CRDs that start serving
their resources, discovery, and server-side printing (Tables) for `kubectl get`.

The object semantics live in `apiserver_store`; this module maps HTTP requests onto them and runs
the server on its own thread and event loop (`EmbeddedApiServer`), so that clients running in the
caller's loop (kopf) never compete with it. No request history is kept: memory and time stay linear
in the number of objects.
"""

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock import KubernetesError

from .apiserver_exec import ExecHandler, exec_request, serve_exec
from .apiserver_faults import ApiFaults, FaultyListener
from .apiserver_http import (
    IGNORE,
    MAX_REQUEST_BYTES,
    STRICT,
    ApiTarget,
    WatchLines,
    continue_token,
    continued,
    delete_options,
    field_problems,
    field_validation,
    initial_events_end,
    is_dry_run,
    is_metadata_path,
    json_response,
    list_document,
    log_container,
    log_tail,
    openapi_group_version,
    parse_resource_path,
    propagation_policy,
    read_body,
    read_object,
    restart_count,
    status_of,
    strict_decoding_error,
    strict_patch_error,
    typed_patch_error,
    waiting_to_start,
    watch_line,
)
from .apiserver_patches import APPLY_PATCH, STRATEGIC_MERGE_PATCH, parse_patch, patcher_for
from .apiserver_printers import FINISHED_POD_PHASES
from .apiserver_resources import (
    KUBERNETES_RELEASE,
    PODS,
    ResourceType,
    api_error,
    api_group_document,
    api_group_list_document,
    api_resource_list_document,
    api_versions_document,
    bad_request,
    invalid,
    openapi_group_version_document,
    openapi_index_document,
    unknown_resource,
)
from .apiserver_schema import unknown_fields
from .apiserver_selectors import Selection, SelectorError
from .apiserver_store import Object, ObjectStore, Subscription
from .apiserver_tables import table_of, wants_table

logger = logging.getLogger(__name__)

_SERVER_VERSION = {
    "major": KUBERNETES_RELEASE.removeprefix("v").split(".")[0],
    "minor": KUBERNETES_RELEASE.split(".")[1],
    "gitVersion": KUBERNETES_RELEASE,
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# (namespace, pod, container, previous) → what the node has of that container's output, or None.
LogSource = Callable[[str, str, str, bool], str | None]
_LOG_FOLLOW_INTERVAL = 0.2


@attrs.define(kw_only=True)
class KubernetesApiEmulator(kmock.KubernetesEmulator):
    """
    kmock's Kubernetes emulator with the semantics of a real API server (see the module's docstring).

    API URLs (/api…, /apis…, /version, /openapi…, health checks) are served from `store` (kmock's own
    `objects` array stays empty); other URLs still go to kmock's reactions (e.g.
    `emulator['get /metrics'] << b'…'`), whose requests are dropped from its log once answered.
    """

    store: ObjectStore = attrs.field(factory=ObjectStore, init=False)
    # The node's logs, as a kubelet serves them: (namespace, pod, container, previous) → text, None when
    # it has none. Without a node, what `set_pod_log` recorded.
    log_source: LogSource | None = attrs.field(default=None, init=False)
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)
    exec_handler: ExecHandler | None = attrs.field(default=None, init=False)
    server_address: str = "127.0.0.1:0"
    _closing: bool = attrs.field(default=False, init=False)
    _watch_lines: WatchLines = attrs.field(factory=WatchLines, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store.removal_listeners.append(self._forget_pod_log)

    def set_pod_log(self, namespace: str, name: str, text: str) -> None:
        """Record the log text of a Pod's container on a server with no node (no `log_source`), served
        by GET …/pods/<name>/log (safe to call from any thread)."""
        self.pod_logs[namespace, name] = text

    def container_log(self, namespace: str, name: str, container: str, previous: bool) -> str | None:
        """What the container wrote (its last instance's, with `previous`); None when the node has none."""
        if self.log_source is not None:
            return self.log_source(namespace, name, container, previous)
        return None if previous else self.pod_logs.get((namespace, name))

    def _forget_pod_log(self, group_resource: tuple[str, str], obj: Object) -> None:
        if group_resource == PODS:
            metadata = obj.get("metadata", {})
            self.pod_logs.pop((metadata.get("namespace", ""), metadata.get("name", "")), None)

    def close(self) -> None:
        """End the open watch and log streams, so that the HTTP server can stop without waiting for them."""
        self._closing = True
        self.store.close_all_subscriptions()

    # Entry point and routing.

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if not self._is_api_path(raw_request.path):
            return await self._serve_by_reactions(raw_request)
        try:
            return await self._route(raw_request)
        except KubernetesError as exc:
            return json_response(status_of(exc), status=exc.status)
        except SelectorError as exc:
            return json_response(status_of(bad_request(str(exc))), status=400)
        except Exception as exc:
            logger.exception("Failed to serve %s %s", raw_request.method, raw_request.path_qs)
            return json_response(status_of(api_error(500, "InternalError", repr(exc))), status=500)

    @staticmethod
    def _is_api_path(path: str) -> bool:
        api_roots = ("/api", "/apis", "/version", "/openapi", *_HEALTH_PATHS)
        return path == "/" or any(path == root or path.startswith(f"{root}/") for root in api_roots)

    async def _serve_by_reactions(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            return await super().__call__(raw_request)
        finally:
            self._requests[:] = [
                request for request in self._requests if request._raw_request is not raw_request
            ]

    async def _route(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw_request.path.rstrip("/") or "/"
        segments = [segment for segment in path.split("/") if segment]
        if is_metadata_path(segments):
            return self._serve_metadata(raw_request.method, path, segments)
        if segments[0] == "api":
            target = parse_resource_path("", segments[1], segments[2:])
        else:
            target = parse_resource_path(segments[1], segments[2], segments[3:])
        if target is None:
            raise unknown_resource(path)
        resource = self.store.resolve(target.group, target.version, target.plural)
        if resource is None or (target.namespace is not None and not resource.namespaced):
            raise unknown_resource(path)
        if target.subresource is not None and target.subresource not in resource.subresources:
            raise unknown_resource(path)
        return await self._serve_resource(raw_request, resource, target)

    def _serve_metadata(self, method: str, path: str, segments: list[str]) -> aiohttp.web.StreamResponse:
        """The root, version, health and discovery documents."""
        if method != "GET":
            raise api_error(405, "MethodNotAllowed", f"the server does not allow {method} on {path}")
        types = self.store.resource_types()
        if path == "/":
            group_paths = {
                f"/apis/{resource.group}/{resource.version}" for resource in types if resource.group
            }
            group_paths |= {f"/apis/{resource.group}" for resource in types if resource.group}
            paths = ["/api", "/api/v1", "/apis", "/version", *_HEALTH_PATHS, *group_paths]
            return json_response({"paths": sorted(paths)})
        if path == "/version":
            return json_response(_SERVER_VERSION)
        if path in _HEALTH_PATHS:
            return aiohttp.web.Response(text="ok")
        if path == "/openapi/v3":
            return json_response(openapi_index_document(types))
        if path == "/openapi/v2":
            # kubectl reads this (protobuf only) to validate a kind that /openapi/v3 does not describe:
            # an empty document describes none, so such a kind fails where a cluster fails it, at
            # mapping it to a resource ("no matches for kind … ensure CRDs are installed first").
            return aiohttp.web.Response(body=b"", content_type=_OPENAPI_V2_PROTOBUF)
        if (group_version := openapi_group_version(segments)) is not None:
            openapi = openapi_group_version_document(*group_version, types)
            if openapi["paths"]:
                return json_response(openapi)
        if path == "/api":
            return json_response(api_versions_document(self.server_address))
        if path == "/apis":
            return json_response(api_group_list_document(types))
        if path == "/api/v1":
            return json_response(api_resource_list_document("", "v1", types))
        if (
            segments[0] == "apis"
            and len(segments) == 2
            and (document := api_group_document(segments[1], types))
        ):
            return json_response(document)
        if segments[0] == "apis" and len(segments) == 3:
            document = api_resource_list_document(segments[1], segments[2], types)
            if document["resources"]:
                return json_response(document)
        raise unknown_resource(path)

    async def _serve_resource(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.StreamResponse:
        method, query = raw_request.method, raw_request.query
        if resource.namespaced and target.name is not None and target.namespace is None:
            raise unknown_resource(raw_request.path)
        if target.subresource == "exec":
            return await self._exec(raw_request, resource, target)
        if method == "GET" and (target.watch or query.get("watch") in ("true", "1")):
            return await self._watch(raw_request, resource, target)
        if method == "GET" and target.name is None:
            return self._list(raw_request, resource, target)
        if method == "GET" and target.subresource == "log":
            return await self._pod_log(raw_request, resource, target)
        if method == "GET" and target.name is not None:
            return self._get(raw_request, resource, target.namespace, target.name)
        if method == "POST" and target.name is None:
            return await self._create(raw_request, resource, target)
        if method == "PUT" and target.name is not None:
            return await self._replace(raw_request, resource, target)
        if method == "PATCH" and target.name is not None:
            return await self._patch(raw_request, resource, target)
        if method == "DELETE" and target.name is not None:
            return await self._delete(raw_request, resource, target)
        if method == "DELETE" and target.subresource is None:
            return await self._delete_collection(raw_request, resource, target)
        raise api_error(405, "MethodNotAllowed", f"the server does not allow {method} on {raw_request.path}")

    # Reading.

    def _get(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, namespace: str | None, name: str
    ) -> aiohttp.web.Response:
        obj = self.store.get(resource, namespace, name)
        if wants_table(raw_request.headers.get("Accept", "")):
            include = raw_request.query.get("includeObject", "Metadata")
            return json_response(
                table_of(resource, [obj], obj["metadata"]["resourceVersion"], include_object=include)
            )
        return json_response(obj)

    def _list(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.Response:
        query = raw_request.query
        selection = Selection.parse(target.namespace, query.get("labelSelector"), query.get("fieldSelector"))
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 0
        after, revision = (
            continued(query["continue"]) if query.get("continue") else (None, self.store.revision)
        )
        items, remaining = self.store.select_page(resource, selection, after, limit)
        if wants_table(raw_request.headers.get("Accept", "")):
            include = query.get("includeObject", "Metadata")
            return json_response(table_of(resource, items, revision, include_object=include))
        document = list_document(resource, items, revision)
        if remaining and items:
            last = items[-1]["metadata"]
            document["metadata"]["continue"] = continue_token(
                revision, last.get("namespace") or "", last["name"]
            )
            document["metadata"]["remainingItemCount"] = remaining
        return json_response(document)

    # Writing.

    async def _create(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.Response:
        body, warnings = await _read_written(raw_request, resource)
        created = self.store.create(resource, target.namespace, body, dry_run=is_dry_run(raw_request.query))
        return json_response(created, status=201, warnings=warnings)

    async def _replace(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.Response:
        assert target.name is not None
        body, warnings = await _read_written(raw_request, resource)
        if resource.schema is not None and not (body.get("metadata") or {}).get("resourceVersion"):
            # Custom resources take no unconditional update (the API server's CRD update strategy).
            why = "Invalid value: 0x0: must be specified for an update"
            cause = {"reason": "FieldValueInvalid", "message": why, "field": "metadata.resourceVersion"}
            raise invalid(resource, target.name, f"metadata.resourceVersion: {why}", [cause])
        replaced = self.store.update(
            resource,
            target.namespace,
            target.name,
            lambda current: body,
            subresource=target.subresource,
            dry_run=is_dry_run(raw_request.query),
        )
        return json_response(replaced, warnings=warnings)

    async def _patch(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.Response:
        assert target.name is not None
        content_type = raw_request.content_type
        level = field_validation(raw_request.method, raw_request.query)
        patcher = patcher_for(content_type)
        patch = parse_patch(content_type, await read_body(raw_request))
        dry_run = is_dry_run(raw_request.query)
        namespace = target.namespace if resource.namespaced else None
        missing = self.store.find(resource.group_resource, namespace, target.name) is None
        if content_type == APPLY_PATCH and isinstance(patch, dict):
            if unknown := unknown_fields(patch, resource.schema):
                raise typed_patch_error(resource, patch, unknown)
        if content_type == APPLY_PATCH and missing and target.subresource is None:
            if not isinstance(patch, dict):
                raise bad_request("an applied configuration must be an object")
            body = {**patch, "metadata": {**(patch.get("metadata") or {}), "name": target.name}}
            return json_response(
                self.store.create(resource, target.namespace, body, dry_run=dry_run), status=201
            )
        warnings: list[str] = []
        strategic = content_type == STRATEGIC_MERGE_PATCH

        def patched_and_checked(current: Object) -> Any:
            patched = patcher(current, patch)
            warnings.extend(
                _checked_fields(
                    resource,
                    patched,
                    level,
                    lambda problems: strict_patch_error(
                        patch if strategic else patched, problems, strategic=strategic
                    ),
                )
            )
            return patched

        patched = self.store.update(
            resource,
            target.namespace,
            target.name,
            patched_and_checked,
            subresource=target.subresource,
            dry_run=dry_run,
        )
        return json_response(patched, warnings=warnings)

    async def _delete(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.Response:
        assert target.name is not None
        options = await delete_options(raw_request)
        deleted = self.store.delete(
            resource,
            target.namespace,
            target.name,
            propagation=propagation_policy(options, raw_request.query),
            preconditions=options.get("preconditions"),
            dry_run=is_dry_run(raw_request.query, options),
        )
        return json_response(deleted)

    async def _delete_collection(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.Response:
        query = raw_request.query
        options = await delete_options(raw_request)
        selection = Selection.parse(target.namespace, query.get("labelSelector"), query.get("fieldSelector"))
        deleted = []
        for obj in self.store.select(resource, selection):
            metadata = obj["metadata"]
            if (
                self.store.find(resource.group_resource, metadata.get("namespace"), metadata["name"])
                is not None
            ):
                deleted.append(
                    self.store.delete(
                        resource,
                        metadata.get("namespace"),
                        metadata["name"],
                        propagation=propagation_policy(options, query),
                        dry_run=is_dry_run(query, options),
                    )
                )
        return json_response(list_document(resource, deleted, self.store.revision))

    # Streaming.

    async def _watch(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.StreamResponse:
        query = raw_request.query
        field_terms = [query.get("fieldSelector", ""), f"metadata.name={target.name}" if target.name else ""]
        selection = Selection.parse(
            target.namespace, query.get("labelSelector"), ",".join(filter(None, field_terms))
        )
        since = query.get("resourceVersion")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            subscription = self.store.subscribe(resource, selection, since)
        except KubernetesError as exc:
            if exc.status != 410:
                raise
            await response.prepare(raw_request)  # an expired revision is reported in the stream, as ERROR
            await response.write(watch_line("ERROR", status_of(exc)))
            await response.write_eof()
            return response
        if query.get("sendInitialEvents") == "true" and since in (None, "", "0"):
            subscription.queue.put_nowait(("BOOKMARK", initial_events_end(resource, self.store.revision)))
        if self._closing:
            subscription.close()
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds", "0") != "0" else None
        try:
            await response.prepare(raw_request)
            await self._stream_events(
                response, subscription, timeout, as_table=wants_table(raw_request.headers.get("Accept", ""))
            )
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self.store.unsubscribe(subscription)
        return response

    async def _stream_events(
        self,
        response: aiohttp.web.StreamResponse,
        subscription: Subscription,
        timeout: float | None,
        *,
        as_table: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        first = True
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                deliveries = [await asyncio.wait_for(subscription.queue.get(), remaining)]
            except TimeoutError:
                return
            while not subscription.queue.empty():  # send what has piled up in one write
                deliveries.append(subscription.queue.get_nowait())
            lines: list[bytes] = []
            for delivery in deliveries:
                if delivery is None:
                    await response.write(b"".join(lines))
                    return
                kind, obj = delivery
                if as_table and kind != "BOOKMARK":
                    obj = table_of(
                        subscription.resource, [obj], obj["metadata"]["resourceVersion"], with_columns=first
                    )
                    first = False
                lines.append(self._watch_lines.line(kind, obj))
            await response.write(b"".join(lines))

    async def _pod_log(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.StreamResponse:
        """GET …/pods/<name>/log: the container kube-apiserver would pick (`log_container`), as its
        node has it; `previous` reads the instance before the last restart, `follow` streams until the
        Pod ends."""
        assert target.namespace is not None and target.name is not None
        key = (target.namespace, target.name)
        query = raw_request.query
        requested = self.store.get(resource, *key)
        container = log_container(requested, query.get("container"))
        previous = query.get("previous") == "true"
        read = self.container_log(*key, container, previous)
        if read is None and previous:  # the kubelet's answers (kuberuntime), passed on as 400s
            raise bad_request(f'previous terminated container "{container}" in pod "{target.name}" not found')
        if read is None and self.log_source is not None:
            raise bad_request(waiting_to_start(requested, container))
        sent = read or ""  # read once: a running Pod's log may grow before a second read
        text = log_tail(sent, query)
        if query.get("follow") != "true" or previous:
            return aiohttp.web.Response(text=text, content_type="text/plain")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(raw_request)
        await response.write(text.encode())
        # One container instance is followed, as a kubelet follows it: a restart (the count in the
        # status, or a log that no longer starts with what was sent) ends it, with the end of what
        # that instance wrote, which is the `previous` log then.
        restarts = restart_count(self.store.find(PODS, *key), container)
        while not self._closing:
            pod = self.store.find(PODS, *key)
            current = self.container_log(*key, container, False) or ""
            rotated = not current.startswith(sent)  # the restart began: ours is the previous log now
            restarted = rotated or restart_count(pod, container) > restarts  # it ended: its file is whole
            if rotated:
                current = self.container_log(*key, container, True) or sent
            if current.startswith(sent) and current != sent:
                await response.write(current[len(sent) :].encode())
                sent = current
            if restarted or pod is None or (pod.get("status") or {}).get("phase") in FINISHED_POD_PHASES:
                break
            await asyncio.sleep(_LOG_FOLLOW_INTERVAL)
        await response.write_eof()
        return response

    async def _exec(
        self, raw_request: aiohttp.web.BaseRequest, resource: ResourceType, target: ApiTarget
    ) -> aiohttp.web.StreamResponse:
        assert target.namespace is not None and target.name is not None
        if raw_request.method not in ("GET", "POST"):
            message = f"the server does not allow {raw_request.method} on {raw_request.path}"
            raise api_error(405, "MethodNotAllowed", message)
        pod = self.store.get(resource, target.namespace, target.name)
        request = exec_request(pod, raw_request.query)
        return await serve_exec(raw_request, request, self.exec_handler)


async def _read_written(
    raw_request: aiohttp.web.BaseRequest, resource: ResourceType
) -> tuple[Any, list[str]]:
    """A created or replaced object as sent, and the `Warning`s of its fields (`_checked_fields`)."""
    level = field_validation(raw_request.method, raw_request.query)
    duplicates: list[str] = []
    body = await read_object(raw_request, duplicates)
    refusal = functools.partial(strict_decoding_error, resource)
    return body, _checked_fields(resource, body, level, refusal, duplicates)


def _checked_fields(
    resource: ResourceType,
    obj: Any,
    level: str,
    refusal: Callable[[list[str]], KubernetesError],
    duplicates: list[str] | None = None,
) -> list[str]:
    """The `Warning`s of a write of `obj` at its `fieldValidation` level, or under Strict its refusal
    when it repeats or has unknown fields (Kubernetes docs: "API Concepts", "Field validation"). The
    store then prunes the unknown ones, as kube-apiserver does under Warn and Ignore."""
    if level == IGNORE or not isinstance(obj, dict):
        return []
    problems = field_problems(unknown_fields(obj, resource.schema), duplicates or ())
    if problems and level == STRICT:
        raise refusal(problems)
    return problems


class EmbeddedApiServer:
    """The extended emulator served over plain HTTP on its own thread and event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, faults: ApiFaults | None = None) -> None:
        """`faults`: also serve `faulty_url`, the same objects behind injected faults (apiserver_faults)."""
        self.host, self.port = host, port
        self.url = self.faulty_url = ""
        self.emulator = KubernetesApiEmulator()
        self.faults = FaultyListener(self.emulator, faults) if faults else None
        self._runners: list[aiohttp.web.ServerRunner] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def set_pod_log(self, namespace: str, name: str, text: str) -> None:
        self.emulator.set_pod_log(namespace, name, text)

    def on_removal(self, listener: Callable[[tuple[str, str], Object], None]) -> None:
        """Call `listener(resource, object)` as each object goes for good (on the server's loop: it must
        be quick)."""
        self.emulator.store.removal_listeners.append(listener)

    def set_log_source(self, source: LogSource | None) -> None:
        """Where Pods' logs are read: the node's (a kubelet's `container_log`), or None for none."""
        self.emulator.log_source = source

    def set_exec_handler(self, handler: ExecHandler | None) -> None:
        """Who runs the commands of `pods/<name>/exec` (a coroutine function run on the server's loop)."""
        self.emulator.exec_handler = handler

    def start(self) -> str:
        """Start serving; returns the base URL, e.g. http://127.0.0.1:38123."""
        if self._thread is not None or self._ready.is_set():
            raise RuntimeError("The embedded API server starts only once; create another one to restart.")
        self._thread = threading.Thread(target=self._run, name="embedded-api-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("The embedded API server failed to start.") from self._startup_error
        return self.url

    def stop(self) -> None:
        """Close the open streams, stop serving, and end the thread."""
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "EmbeddedApiServer":
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        await self.emulator.__aenter__()
        loop = asyncio.get_running_loop()

        def request(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> aiohttp.web.BaseRequest:
            # aiohttp reads bodies of 1 MiB at most by default; the API server takes up to 3 MiB.
            return aiohttp.web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=MAX_REQUEST_BYTES + 1
            )

        async def listen(handler: Any, port: int) -> int:
            server = aiohttp.web.Server(
                handler,
                request_factory=request,
                handler_cancellation=True,
                access_log=None,
                # Go servers (kube-apiserver) take request lines and headers up to 1 MB; aiohttp 8 KiB.
                max_line_size=1 << 20,
                max_field_size=1 << 20,
            )
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            self._runners.append(runner)
            await aiohttp.web.TCPSite(runner, self.host, port).start()
            return int(runner.addresses[0][1])

        self.port = await listen(self.emulator, self.port)
        self.url = f"http://{self.host}:{self.port}"
        self.emulator.server_address = f"{self.host}:{self.port}"
        if self.faults is not None:
            self.faulty_url = f"http://{self.host}:{await listen(self.faults, 0)}"

    async def _shutdown(self) -> None:
        self.emulator.close()
        for runner in self._runners:
            await runner.cleanup()
        await self.emulator.__aexit__(None, None, None)


def write_kubeconfig(
    path: Path, url: str, namespace: str = "default", context: str = "autoscene-sandbox"
) -> Path:
    """A kubeconfig for the embedded server: plain HTTP, no credentials, one context made current."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
