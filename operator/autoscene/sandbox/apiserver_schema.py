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


def normalize_by_schema(obj: Mapping[str, Any], schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop fields the schema does not declare and fill in `default:`s of absent ones (no validation)."""
    if not schema:
        return dict(obj)
    return _normalize_object(obj, schema, keep_header=True)


def _normalize(value: Any, schema: Any) -> Any:
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, Mapping):
        return _normalize_object(
            value, schema, keep_header=bool(schema.get("x-kubernetes-embedded-resource"))
        )
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_normalize(item, schema["items"]) for item in value]
    return value


def _normalize_object(
    value: Mapping[str, Any], schema: Mapping[str, Any], *, keep_header: bool
) -> dict[str, Any]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    keeps_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or additional is True
    result: dict[str, Any] = {}
    for key, item in value.items():
        if keep_header and key in _OBJECT_HEADER:
            result[key] = item  # the object's identity is never pruned, whatever the schema says of it
        elif key in properties:
            if item is None and not (properties[key] or {}).get("nullable"):
                continue  # "null values for fields that are not nullable are pruned" (CRD docs, Defaulting)
            result[key] = _normalize(item, properties[key])
        elif isinstance(additional, Mapping):
            result[key] = _normalize(item, additional)
        elif keeps_unknown:
            result[key] = item
    for key, subschema in properties.items():
        if key not in result and isinstance(subschema, Mapping) and "default" in subschema:
            result[key] = _normalize(clone(subschema["default"]), subschema)
    return result


def schema_errors(
    obj: Mapping[str, Any], schema: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> list[schemas.FieldError]:
    """The causes of a `422 Invalid` for a pruned and defaulted object, in kube-apiserver's order and
    words: the schema's errors, then the failed CEL rules (`old` is the stored object on an update).
    After an error of a kind that stops kube-apiserver's CEL evaluation, a schema with rules adds
    its "some validation rules were not checked" cause instead."""
    errors = schemas.field_errors(obj, schema)
    if not has_rules(schema):
        return errors
    if any(error.reason in _BLOCKING for error in errors):
        return [
            *errors,
            schemas.FieldError("<nil>", "FieldValueInvalid", f"Invalid value: null: {RULES_NOT_CHECKED}"),
        ]
    failed = violations(obj, schema, old)
    return [*errors, *(schemas.FieldError(v.field, "FieldValueInvalid", v.message) for v in failed)]
