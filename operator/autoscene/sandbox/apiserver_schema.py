"""Custom objects by their CRD's structural schema, as the API server treats them: pruning and
defaulting (unknown fields and nulls of non-nullable fields are dropped, then absent fields get their
defaults), then validation (the schema's types and constraints, then its CEL rules)."""

from collections.abc import Mapping
from typing import Any

from .. import schemas
from .apiserver_cel import RULES_NOT_CHECKED, has_rules, violations
from .apiserver_patches import clone

# Errors after which kube-apiserver evaluates no CEL rule: the rules could not rely on the types.
_BLOCKING = ("FieldValueRequired", "FieldValueTypeInvalid", "FieldValueNotSupported")

_OBJECT_HEADER = ("apiVersion", "kind", "metadata")


def normalize_by_schema(
    obj: Mapping[str, Any], schema: Mapping[str, Any] | None, dropped: list[str] | None = None
) -> dict[str, Any]:
    """Drop fields the schema does not declare and fill in `default:`s of absent ones (no validation).
    The paths of the undeclared fields dropped ("spec.fileGlobb", "spec.items[0].x") go to `dropped`
    when given; the nulls pruned from declared fields do not."""
    if not schema:
        return dict(obj)
    return _normalize_object(obj, schema, keep_header=True, path="", dropped=dropped)


def _normalize(value: Any, schema: Any, path: str, dropped: list[str] | None) -> Any:
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, Mapping):
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        return _normalize_object(value, schema, keep_header=embedded, path=path, dropped=dropped)
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [
            _normalize(item, schema["items"], f"{path}[{index}]", dropped) for index, item in enumerate(value)
        ]
    return value


def _normalize_object(
    value: Mapping[str, Any],
    schema: Mapping[str, Any],
    *,
    keep_header: bool,
    path: str,
    dropped: list[str] | None,
) -> dict[str, Any]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    keeps_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or additional is True
    result: dict[str, Any] = {}
    for key, item in value.items():
        here = f"{path}.{key}" if path else key
        if keep_header and key in _OBJECT_HEADER:
            result[key] = item  # the object's identity is never pruned, whatever the schema says of it
        elif key in properties:
            if item is None and not (properties[key] or {}).get("nullable"):
                continue  # "null values for fields that are not nullable are pruned" (CRD docs, Defaulting)
            result[key] = _normalize(item, properties[key], here, dropped)
        elif isinstance(additional, Mapping):
            result[key] = _normalize(item, additional, here, dropped)
        elif keeps_unknown:
            result[key] = item
        elif dropped is not None:
            dropped.append(here)
    for key, subschema in properties.items():
        if key not in result and isinstance(subschema, Mapping) and "default" in subschema:
            result[key] = _normalize(clone(subschema["default"]), subschema, key, None)
    return result


def schema_errors(
    obj: Mapping[str, Any], schema: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> list[schemas.FieldError]:
    """The causes of a `422 Invalid` for a pruned and defaulted object, in kube-apiserver's order and
    words: the schema's errors, then the failed CEL rules (`old` is the stored object on an update).
    After an error of a kind that stops kube-apiserver's CEL evaluation, a schema with rules adds
    its "some validation rules were not checked" cause instead."""
    errors = schemas.field_errors(obj, _ratcheted(schema, obj, old))
    if not has_rules(schema):
        return errors
    if any(error.reason in _BLOCKING for error in errors):
        return [
            *errors,
            schemas.FieldError("<nil>", "FieldValueInvalid", f"Invalid value: null: {RULES_NOT_CHECKED}"),
        ]
    failed = violations(obj, schema, old)
    return [*errors, *(schemas.FieldError(v.field, "FieldValueInvalid", v.message) for v in failed)]


# Schemas with the top-level properties an update left unchanged accepting anything, by the schema's
# identity and those properties: a status write checks its status, not again the spec it carries.
_RATCHETED: dict[tuple[int, frozenset[str]], tuple[Mapping[str, Any], dict[str, Any]]] = {}


def _ratcheted(
    schema: Mapping[str, Any], obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """The schema an update is checked against: kube-apiserver's validation ratcheting (GA in 1.33;
    "Validation ratcheting" in the CRD docs) lets errors of values the update left unchanged pass. Done
    here for whole top-level fields only, the case every status write and metadata change is:
    finer-grained ratcheting (a changed spec with an invalid field left as it was) is not."""
    properties = schema.get("properties") or {}
    unchanged = frozenset(
        key for key in properties if old is not None and key in obj and obj[key] == old.get(key)
    )
    if not unchanged:
        return schema
    key = (id(schema), unchanged)
    found = _RATCHETED.get(key)
    if found is None or found[0] is not schema:
        variant = {**schema, "properties": {k: {} if k in unchanged else v for k, v in properties.items()}}
        found = _RATCHETED[key] = (schema, variant)
        if len(_RATCHETED) > 64:  # schemas replaced by CRD updates: the oldest entry goes
            _RATCHETED.pop(next(iter(_RATCHETED)))
    return found[1]


# Unknown fields (Kubernetes docs: "API Concepts", "Field validation"). An object's metadata is decoded
# as ObjectMeta whatever the schema says of it, so its unknown fields are those of ObjectMeta's Go types
# (k8s.io/apimachinery/pkg/apis/meta/v1, types.go); the rest of a custom object is pruned by its schema.
_OBJECT_META_FIELDS = frozenset(
    {
        "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
        "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
        "ownerReferences", "finalizers", "managedFields",
    }
)  # fmt: skip
_OBJECT_META_LISTS = {
    "ownerReferences": frozenset({"apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"}),
    "managedFields": frozenset(
        {"manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource"}
    ),
}


def pruned_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata without the fields ObjectMeta does not declare, as decoding it drops them."""
    pruned = {key: value for key, value in metadata.items() if key in _OBJECT_META_FIELDS}
    for key, fields in _OBJECT_META_LISTS.items():
        if isinstance(items := pruned.get(key), list):
            pruned[key] = [
                {name: value for name, value in item.items() if name in fields}
                if isinstance(item, Mapping)
                else item
                for item in items
            ]
    return pruned


def unknown_fields(obj: Mapping[str, Any], schema: Mapping[str, Any] | None) -> list[str]:
    """The fields a write of `obj` drops as unknown, as kube-apiserver names them ("spec.fileGlobb",
    "metadata.ownerReferences[0].bogus") and orders them: those of the metadata, then those the
    schema prunes, each sorted. Nulls of fields that are not nullable are pruned but are not unknown.

    Built-in kinds have no schema here (`schema` None): only their metadata is checked. What is left:
    a Pod's `spec.containers[0].comand` is accepted under `Strict` and stored as sent, where
    kube-apiserver refuses it (Strict) or drops it (Warn, Ignore) by the kind's Go type."""
    metadata = obj.get("metadata")
    in_metadata = sorted(_unknown_in_metadata(metadata)) if isinstance(metadata, Mapping) else []
    if not schema:
        return in_metadata
    dropped: list[str] = []
    normalize_by_schema(obj, schema, dropped)
    return [*in_metadata, *sorted(dropped)]


def _unknown_in_metadata(metadata: Mapping[str, Any]) -> list[str]:
    found = [f"metadata.{key}" for key in metadata if key not in _OBJECT_META_FIELDS]
    for key, fields in _OBJECT_META_LISTS.items():
        items = metadata.get(key)
        for index, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, Mapping):
                found += [f"metadata.{key}[{index}].{name}" for name in item if name not in fields]
    return found
