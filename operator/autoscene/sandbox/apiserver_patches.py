"""The PATCH content types of the Kubernetes API, applied to plain JSON-like objects."""

from collections.abc import Callable, Mapping
from typing import Any

import jsonpatch
import jsonpointer
import yaml
from kmock import KubernetesError

from . import jsoncodec
from .apiserver_resources import api_error, bad_request

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)

# The `patchMergeKey`s of the built-in lists that strategic merge patches merge by key instead of replacing.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "ownerReferences": "uid",
    "conditions": "type",
}
_MERGED_SCALAR_LISTS = {"finalizers"}  # patchStrategy=merge on a list of strings: a union


def clone(value: Any) -> Any:
    """A deep copy of a JSON-like value (faster than `copy.deepcopy` for such data)."""
    return jsoncodec.loads(jsoncodec.dumps(value))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, `null` removes a key, everything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _without_directives(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _without_directives(item) for key, item in value.items() if not key.startswith("$")}
    if isinstance(value, list):
        return [_without_directives(item) for item in value]
    return value


def _merge_list_by_key(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    result = list(current)
    for item in patch:
        if not isinstance(item, Mapping) or key not in item:
            result.append(_without_directives(item))
            continue
        index = next(
            (i for i, old in enumerate(result) if isinstance(old, Mapping) and old.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_without_directives(item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """
    An approximation of the strategic merge patch without the Go type information.

    Known lists (containers, env, volumes, ownerReferences, conditions, …) merge by their keys and
    finalizers merge as a set, as their `patchStrategy` says; other lists are replaced, like a merge
    patch. The `$patch` and `$deleteFromPrimitiveList` directives are honoured; `$setElementOrder` and
    `$retainKeys` are ignored.
    """
    if not isinstance(patch, Mapping):
        return _without_directives(patch)
    if patch.get("$patch") == "replace":
        return _without_directives(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        current = result.get(key)
        if value is None or (isinstance(value, Mapping) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, Mapping):
            result[key] = strategic_merge_patch(current, value)
        elif isinstance(value, list) and isinstance(current, list) and key in _MERGE_KEYS:
            result[key] = _merge_list_by_key(current, value, _MERGE_KEYS[key])
        elif isinstance(value, list) and isinstance(current, list) and key in _MERGED_SCALAR_LISTS:
            result[key] = current + [item for item in value if item not in current]
        else:
            result[key] = _without_directives(value)
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field) or [] if item not in value]
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902; a failed `test` is 422 Unprocessable Entity, which kopf reads as a conflict."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(target, operations)
    except jsonpatch.InvalidJsonPatch as exc:
        raise bad_request(f"invalid JSON patch: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        message = f"the server rejected our request due to an error in our request: {exc}"
        raise api_error(422, "Invalid", message) from None


def parse_patch(content_type: str, body: bytes) -> Any:
    try:
        if content_type == APPLY_PATCH:
            return yaml.safe_load(body.decode("utf-8") or "{}")
        return jsoncodec.loads(body or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the patch body cannot be parsed: {exc}") from None


def patcher_for(content_type: str) -> Callable[[Any, Any], Any]:
    patchers: dict[str, Callable[[Any, Any], Any]] = {
        JSON_PATCH: json_patch,
        MERGE_PATCH: merge_patch,
        STRATEGIC_MERGE_PATCH: strategic_merge_patch,
        APPLY_PATCH: strategic_merge_patch,  # server-side apply, approximated as create-or-merge
    }
    if content_type not in patchers:
        raise unsupported_media_type(content_type)
    return patchers[content_type]


def unsupported_media_type(content_type: str) -> KubernetesError:
    return api_error(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
    )
