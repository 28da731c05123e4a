"""The HTTP side of the embedded API server: URLs, query parameters, bodies and response documents."""

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import yaml
from kmock import KubernetesError

from . import jsoncodec
from .apiserver_protobuf import UnsupportedProtobuf, decode_object
from .apiserver_resources import ResourceType, api_error, bad_request
from .apiserver_store import Object


@dataclass(frozen=True)
class ApiTarget:
    """What a resource URL addresses: /api/v1 or /apis/<group>/<version>, then the rest."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch: bool = False  # the deprecated /watch/ URL prefix


def parse_resource_path(group: str, version: str, segments: list[str]) -> ApiTarget | None:
    watch = bool(segments) and segments[0] == "watch"
    segments = segments[1:] if watch else segments
    namespace = None
    # /namespaces/<ns>/<plural>… is a namespaced URL, but /namespaces/<name>/status is a namespace's own.
    if (
        len(segments) >= 3
        and segments[0] == "namespaces"
        and not (len(segments) == 3 and segments[2] in ("status", "finalize"))
    ):
        namespace, segments = segments[1], segments[2:]
    if not 1 <= len(segments) <= 3:
        return None
    name = segments[1] if len(segments) >= 2 else None
    subresource = segments[2] if len(segments) == 3 else None
    return ApiTarget(group, version, segments[0], namespace, name, subresource, watch)


def is_metadata_path(segments: list[str]) -> bool:
    """The root, version, health, OpenAPI and discovery paths: all but those of resources."""
    if not segments or segments[0] not in ("api", "apis"):
        return True
    return len(segments) <= (2 if segments[0] == "api" else 3)


def openapi_group_version(segments: list[str]) -> tuple[str, str] | None:
    """The group and version of /openapi/v3/api/<version> or /openapi/v3/apis/<group>/<version>."""
    if segments[:3] == ["openapi", "v3", "api"] and len(segments) == 4:
        return "", segments[3]
    if segments[:3] == ["openapi", "v3", "apis"] and len(segments) == 5:
        return segments[3], segments[4]
    return None


def json_response(payload: Any, status: int = 200, warnings: Iterable[str] = ()) -> aiohttp.web.Response:
    """A JSON answer, with one `Warning` header per warning (RFC 7234's 299, as kube-apiserver sends them)."""
    response = aiohttp.web.Response(
        body=jsoncodec.dumps(payload), status=status, content_type="application/json"
    )
    for warning in warnings:
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


def list_document(resource: ResourceType, items: list[Object], revision: str) -> dict[str, Any]:
    return {
        "kind": f"{resource.kind}List",
        "apiVersion": resource.api_version,
        "metadata": {"resourceVersion": revision},
        "items": items,
    }


def continue_token(revision: str, namespace: str, name: str) -> str:
    """The `continue` of a list page, in kube-apiserver's shape: base64 of {"v", "rv", "start"}, where
    the next page starts after (namespace, name). (The later pages show the objects as they are then,
    not as of `rv`: the embedded server keeps no snapshots.)"""
    start = f"{namespace}/{name}\x00"
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": int(revision), "start": start})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def continued(token: str) -> tuple[tuple[str, str], str]:
    """Where the page of a `continue` token starts, and the list's resourceVersion; 400 when it is
    not one (as kube-apiserver answers a malformed continue)."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, _, name = str(decoded["start"]).rstrip("\x00").partition("/")
        return (namespace, name), str(int(decoded["rv"]))
    except (ValueError, KeyError, TypeError) as error:
        raise bad_request(f"continue key is not valid: {error}") from error


def log_container(pod: Mapping[str, Any], requested: str | None) -> str:
    """The container a Pod log request reads, as kube-apiserver picks it (LogLocation in
    pkg/registry/core/pod/strategy.go): the one named, if it is one of the Pod's containers, init or
    ephemeral containers; else the Pod's only container. 400 otherwise, with kube-apiserver's message."""
    spec, name = pod.get("spec") or {}, pod["metadata"]["name"]

    def names(key: str) -> list[str]:
        return [str(container.get("name")) for container in spec.get(key) or []]

    containers, init = names("containers"), names("initContainers")
    if requested:
        if requested in (*containers, *init, *names("ephemeralContainers")):
            return requested
        raise bad_request(f"container {requested} is not valid for pod {name}")
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise bad_request(f"a container name must be specified for pod {name}")
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    raise bad_request(message)


# A kubelet's words for the waiting reasons it names in a log request's refusal (images.ErrImagePull…).
_WAITING_WORDS = {
    "ErrImagePull": "image can't be pulled",
    "ImagePullBackOff": "trying and failing to pull image",
}


def waiting_to_start(pod: Mapping[str, Any], container: str) -> str:
    """A kubelet's refusal of a log request for a container that has not started and so has no log
    (validateContainerLogStatus in pkg/kubelet/kubelet_pods.go), answered as a 400: why it waits."""
    reason = ((_container_status(pod, container).get("state") or {}).get("waiting") or {}).get("reason")
    said = f'container "{container}" in pod "{pod["metadata"]["name"]}" is waiting to start'
    return f"{said}: {_WAITING_WORDS.get(reason, reason)}" if reason else f"{said} - no logs yet"


def restart_count(pod: Mapping[str, Any] | None, container: str) -> int:
    """How many times the Pod's container (regular or init) was restarted, as its status says."""
    return int(_container_status(pod, container).get("restartCount") or 0)


def _container_status(pod: Mapping[str, Any] | None, container: str) -> Mapping[str, Any]:
    """The status of the Pod's container of that name, regular or init; {} before there is one."""
    status = (pod or {}).get("status") or {}
    statuses = [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]
    return next((one for one in statuses if one.get("name") == container), {})


def log_tail(text: str, query: Mapping[str, str]) -> str:
    if (lines := query.get("tailLines")) is not None and lines.isdigit():
        kept = text.splitlines(keepends=True)[-int(lines) :] if int(lines) else []
        text = "".join(kept)
    if (limit := query.get("limitBytes")) is not None and limit.isdigit():
        text = text.encode()[: int(limit)].decode(errors="ignore")
    return text


def watch_line(kind: str, obj: Mapping[str, Any]) -> bytes:
    return jsoncodec.dumps({"type": kind, "object": obj}) + b"\n"


class WatchLines:
    """Watch events as lines of the stream, each change encoded once for all its watchers: an object's
    uid, resourceVersion and apiVersion name one content, so a Pod followed by the kubelet, the Job
    controller and an operator costs one encoding, not three. Keeps the last `kept` lines; for one
    server's event loop (not thread-safe)."""

    def __init__(self, kept: int = 4096) -> None:
        self.kept = kept
        self._lines: dict[tuple[Any, ...], bytes] = {}

    def line(self, kind: str, obj: Mapping[str, Any]) -> bytes:
        meta = obj.get("metadata") or {}
        key = (kind, obj.get("apiVersion"), meta.get("uid"), meta.get("resourceVersion"))
        if key[2] is None or key[3] is None:  # not a stored object's version (a bookmark)
            return watch_line(kind, obj)
        found = self._lines.get(key)
        if found is None:
            found = self._lines[key] = watch_line(kind, obj)
            if len(self._lines) > self.kept:
                del self._lines[next(iter(self._lines))]  # the oldest: dicts keep insertion order
        return found


def status_of(exc: KubernetesError) -> dict[str, Any]:
    """The `Status` body of an error, as the API server answers failed requests."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": exc.message,
        "reason": exc.reason,
        "code": exc.status,
    }
    if exc.reason is None:
        del status["reason"]  # as kube-apiserver's Status omits an empty reason
    return {**status, "details": exc.details} if exc.details else status


def initial_events_end(resource: ResourceType, revision: str) -> dict[str, Any]:
    annotations = {"k8s.io/initial-events-end": "true"}
    metadata = {"resourceVersion": revision, "annotations": annotations}
    return {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}


def is_dry_run(query: Mapping[str, str], options: Mapping[str, Any] | None = None) -> bool:
    in_query = query.get("dryRun") == "All"
    return in_query or "All" in ((options or {}).get("dryRun") or ())


def propagation_policy(options: Mapping[str, Any], query: Mapping[str, str]) -> str:
    if options.get("orphanDependents") is True or query.get("orphanDependents") == "true":
        return "Orphan"
    return str(options.get("propagationPolicy") or query.get("propagationPolicy") or "Background")


# kube-apiserver refuses request bodies over 3 MiB (its MaxRequestBodyBytes) with 413.
MAX_REQUEST_BYTES = 3 * 1024 * 1024


async def read_body(raw_request: aiohttp.web.BaseRequest) -> bytes:
    """The request's body, or 413 as kube-apiserver answers a body over its limit."""
    if (raw_request.content_length or 0) > MAX_REQUEST_BYTES:
        raise _too_large()
    body = await raw_request.read()
    if len(body) > MAX_REQUEST_BYTES:
        raise _too_large()
    return body


def _too_large() -> KubernetesError:
    return api_error(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_REQUEST_BYTES}")


async def read_object(raw_request: aiohttp.web.BaseRequest, duplicates: list[str] | None = None) -> Any:
    """The request's object; the paths of the fields a JSON body repeats are added to `duplicates`
    (YAML bodies are not checked for them)."""
    content_type, body = raw_request.content_type, await read_body(raw_request)
    if content_type == "application/vnd.kubernetes.protobuf":
        try:
            return decode_object(body)
        except UnsupportedProtobuf as exc:
            raise api_error(415, "UnsupportedMediaType", str(exc)) from None
    try:
        if content_type in ("application/yaml", "application/x-yaml"):
            return yaml.safe_load(body.decode("utf-8"))
        if duplicates is not None:
            return _json_naming_duplicates(body, duplicates)
        return jsoncodec.loads(body or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the request body cannot be parsed: {exc}") from None


async def delete_options(raw_request: aiohttp.web.BaseRequest) -> dict[str, Any]:
    body = await read_body(raw_request)
    if not body.strip():
        return {}
    options = await read_object(raw_request)
    return options if isinstance(options, dict) else {}


def _json_naming_duplicates(body: bytes, duplicates: list[str]) -> Any:
    """The JSON value, the last of a repeated key winning (as in Go's decoder), and the paths of the
    repeated keys ("spec.fileGlob") added to `duplicates`."""
    repeated: dict[int, tuple[dict[str, Any], list[str]]] = {}  # the object is kept: its id stays unique

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)  # in C; the keys are looked at one by one only when some repeat
        if len(obj) < len(items):
            seen: set[str] = set()
            again = repeated.setdefault(id(obj), (obj, []))[1]
            for key, _ in items:
                if key in seen:
                    again.append(key)
                seen.add(key)
        return obj

    value = json.loads(body or b"null", object_pairs_hook=pairs)
    if repeated:
        duplicates.extend(_repeated_paths(value, repeated, ""))
    return value


def _repeated_paths(value: Any, repeated: Mapping[int, tuple[Any, list[str]]], path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key in repeated[id(value)][1] if id(value) in repeated else ():
            yield f"{path}.{key}" if path else key
        for key, item in value.items():
            yield from _repeated_paths(item, repeated, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _repeated_paths(item, repeated, f"{path}[{index}]")


# Field validation (Kubernetes docs: "API Concepts", "Field validation"): what a write does with the
# fields its object's type does not declare. Without the parameter, kube-apiserver warns.
STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
_FIELD_VALIDATION_LEVELS = ("", IGNORE, STRICT, WARN)
_OPTIONS_OF_METHOD = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}


def field_validation(method: str, query: Mapping[str, str]) -> str:
    """The request's `fieldValidation` level; an unsupported one is refused as kube-apiserver refuses it
    (422 on its CreateOptions, UpdateOptions or PatchOptions: the values are case-sensitive)."""
    level = query.get("fieldValidation", "")
    if level not in _FIELD_VALIDATION_LEVELS:
        supported = ", ".join(f'"{value}"' for value in _FIELD_VALIDATION_LEVELS)
        why = f'Unsupported value: "{level}": supported values: {supported}'
        options = _OPTIONS_OF_METHOD.get(method, "CreateOptions")
        cause = {"reason": "FieldValueNotSupported", "message": why, "field": "fieldValidation"}
        message = f'{options}.meta.k8s.io "" is invalid: fieldValidation: {why}'
        raise api_error(422, "Invalid", message, group="meta.k8s.io", kind=options, causes=[cause])
    return level or WARN


def field_problems(unknown: Iterable[str], duplicates: Iterable[str] = ()) -> list[str]:
    """What kube-apiserver says of each repeated and unknown field: its warnings under Warn."""
    return [
        *(f'duplicate field "{path}"' for path in duplicates),
        *(f'unknown field "{path}"' for path in unknown),
    ]


def _strict_decoding(problems: Iterable[str]) -> str:
    return "strict decoding error: " + ", ".join(problems)


def strict_decoding_error(resource: ResourceType, problems: Iterable[str]) -> KubernetesError:
    """A create or update under `Strict` with unknown or repeated fields: 400, in kube-apiserver's words."""
    return bad_request(
        f'{resource.kind} in version "{resource.version}" cannot be handled as a {resource.kind}: '
        + _strict_decoding(problems)
    )


def strict_patch_error(patched: Any, problems: Iterable[str], *, strategic: bool) -> KubernetesError:
    """A patch under `Strict` that leaves unknown fields: 422 on the field `patch`, quoting the patched
    object in Go's JSON (keys sorted), or for a strategic merge patch the patch itself as Go prints a map."""
    shown = _go_printed(patched) if strategic else _go_json(patched)
    why = f"Invalid value: {json.dumps(shown, ensure_ascii=False)}: {_strict_decoding(problems)}"
    cause = {"reason": "FieldValueInvalid", "message": why, "field": "patch"}
    return api_error(422, "Invalid", f' "" is invalid: patch: {why}', causes=[cause])


def typed_patch_error(
    resource: ResourceType, applied: Mapping[str, Any], unknown: list[str]
) -> KubernetesError:
    """A server-side apply of a configuration with unknown fields: whatever the `fieldValidation`,
    kube-apiserver cannot make a typed patch of it (500, no reason). Its walk of an object stops at
    the object's first unknown field (structured-merge-diff's validation), in Go's random map order;
    here in the fields' order."""
    metadata = applied.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    where = f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"
    kind = f"{resource.group}/{resource.version}, Kind={resource.kind}"
    named = [f".{path}: field not declared in schema" for path in first_unknown_of_each_object(unknown)]
    why = named[0] if len(named) == 1 else "errors:\n" + "\n".join(f"  {line}" for line in named)
    return KubernetesError(
        status=500, message=f"failed to create typed patch object ({where}; {kind}): {why}"
    )


def first_unknown_of_each_object(unknown: Iterable[str]) -> list[str]:
    """Of the unknown fields' paths, those a walk of the objects in sorted order reports when it stops
    at an object's first unknown field (and so visits none of the fields after it)."""
    paths = sorted(tuple(path.split(".")) for path in unknown)
    reported: list[str] = []

    def walk(prefix: tuple[str, ...]) -> None:
        below = [path for path in paths if path[: len(prefix)] == prefix and len(path) > len(prefix)]
        for key in sorted({path[len(prefix)] for path in below}):
            if prefix + (key,) in below:
                reported.append(".".join(prefix + (key,)))
                return
            walk(prefix + (key,))

    walk(())
    return reported


def _go_json(value: Any) -> str:
    """Go's encoding/json of a map: keys sorted, no spaces, <, > and & escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _go_printed(value: Any) -> str:
    """A JSON value as Go's fmt prints it (%v): map[key:value …] with sorted keys, [item …] for lists."""
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{key}:{_go_printed(value[key])}" for key in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_printed(item) for item in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
