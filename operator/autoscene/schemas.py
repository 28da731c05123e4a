"""Custom objects checked against their CustomResourceDefinitions, as the API server would check them.

`load_crds` reads the CRDs of a folder (`crds/`), `validate` lists what is wrong with a custom object
in words a user can act on, and `apply_defaults` fills in the schema's `default`s.

The CRD schemas are OpenAPI v3 with Kubernetes extensions; they are translated to JSON Schema
(draft 2020-12) for `jsonschema`:

- `x-kubernetes-int-or-string: true` accepts an integer or a string;
- `nullable: true` also accepts null;
- objects reject fields their schema does not list (as `kubectl apply` does with its default strict
  field validation), unless marked `x-kubernetes-preserve-unknown-fields: true`;
- `x-kubernetes-list-type: set` items, and `map` items' `x-kubernetes-list-map-keys`, must be unique;
- `format: date-time` must be RFC 3339, `int32` / `int64` must fit;
- `metadata` is only checked to be an object;
- CEL rules (`x-kubernetes-validations`) are evaluated by `sandbox/apiserver_cel.py` once the rest
  holds, as on create (transition rules, which compare with the stored object, are not).
"""

import copy
import datetime
import decimal
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .sandbox import apiserver_cel as cel

CrdKey = tuple[str, str]
"""(apiVersion, kind) of the custom objects a CRD serves, e.g. ("autoscene.io/v1alpha1", "Action")."""

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# Kubernetes resource quantities (as in a container's resources), without a sign.
_QUANTITY = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Patterns of our CRDs, said in words next to the pattern itself.
_PATTERN_HINTS = {
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$": (
        "an object name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
    ),
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$": "an object name, or empty",
    r"^[0-9a-f]{64}$": "64 lower-case hexadecimal digits",
    r"^([0-9a-f]{64})?$": "64 lower-case hexadecimal digits, or empty",
    _QUANTITY: "a quantity such as 2, 500m, 512Mi or 1Gi",
    r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)([KMGTPE]i|[kMGTPE])?$": "a storage size such as 500Mi, 10Gi or 1Ti",
}
_JSON_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def load_crds(folder: Path) -> dict[CrdKey, dict[str, Any]]:
    """Every CustomResourceDefinition in the folder's YAML files, by the (apiVersion, kind) it serves.

    A CRD serving several versions appears once per served version. Files without CRDs (such as a
    `kustomization.yaml`) are skipped.
    """
    crds: dict[CrdKey, dict[str, Any]] = {}
    for path in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        with path.open(encoding="utf-8") as stream:
            documents = list(yaml.safe_load_all(stream))
        for document in documents:
            if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    crds[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = document
    return crds


def validate(obj: Any, crds: Mapping[CrdKey, Mapping[str, Any]]) -> list[str]:
    """What is wrong with a custom object for its CRD, one readable sentence each; [] when it is valid.

    Each error starts with the path of the offending field, e.g.
    `spec.timeoutSeconds: must be at least 1, not -5`.
    """
    if not isinstance(obj, Mapping):
        return [f"the object must be a mapping, not {_type_name(obj)}"]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return ["apiVersion and kind must be set to non-empty strings"]
    crd = crds.get((api_version, kind))
    if crd is None:
        known = ", ".join(sorted(f"{served} ({group_version})" for group_version, served in crds)) or "none"
        return [f'no CustomResourceDefinition serves kind "{kind}" in "{api_version}" (known: {known})']
    errors: list[str] = []
    instance = _plain(obj)
    schema = to_json_schema(_schema_of(crd, api_version.rsplit("/", 1)[-1]), root=True)
    validator = _Validator(schema, format_checker=_FORMATS)
    for error in sorted(validator.iter_errors(instance), key=lambda error: _path(error.absolute_path)):
        for message in _describe(error):
            if message not in errors:
                errors.append(message)
    if not errors:  # the rules read typed values: the API server, too, leaves them for a later try
        for violation in cel.violations(instance, _schema_of(crd, api_version.rsplit("/", 1)[-1])):
            field = "" if violation.field == "<nil>" else violation.field
            errors.append(f"{_at(field)}{violation.message.removeprefix('Invalid value: ')}")
    return errors


@dataclass(frozen=True)
class FieldError:
    """One field's error as the API server reports it: a `StatusCause` of a 422 `Invalid` Status."""

    field: str
    reason: str  # FieldValueRequired, FieldValueTypeInvalid, FieldValueNotSupported, FieldValueInvalid
    message: str


def field_errors(obj: Any, schema: Mapping[str, Any]) -> list[FieldError]:
    """The errors of an object against a version's structural schema (its `openAPIV3Schema`), worded
    as kube-apiserver words them (k8s.io/apimachinery/pkg/util/validation/field); [] when it is valid.

    Unknown fields are not errors here: the API server prunes them before it validates.
    """
    errors: list[FieldError] = []
    for error in sorted(
        _validator_of(schema).iter_errors(_plain(obj)), key=lambda error: _path(error.absolute_path)
    ):
        for found in _field_errors(error):
            if found not in errors:
                errors.append(found)
    return errors


# The validators of the schemas last checked against, by identity: the API server checks every write
# of a kind against the same schema object, and building a validator (the translation included) costs
# about as much as the check. Each entry keeps its schema, so that its id is not reused meanwhile.
_VALIDATORS: dict[int, tuple[Mapping[str, Any], Any]] = {}
_VALIDATORS_KEPT = 64


def _validator_of(schema: Mapping[str, Any]) -> Any:
    found = _VALIDATORS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    validator = _Validator(to_json_schema(schema, root=True), format_checker=_FORMATS)
    _VALIDATORS[id(schema)] = (schema, validator)
    if len(_VALIDATORS) > _VALIDATORS_KEPT:
        _VALIDATORS.pop(next(iter(_VALIDATORS)), None)  # the oldest: dicts keep insertion order
    return validator


def _field_errors(error: jsonschema.ValidationError) -> list[FieldError]:
    path, instance, expected, kind = (
        _path(error.absolute_path),
        error.instance,
        error.validator_value,
        error.validator,
    )
    if kind == "required":
        return [
            FieldError(_join(path, name), "FieldValueRequired", "Required value")
            for name in expected
            if name not in instance
        ]
    if kind == "additionalProperties":
        return []
    if kind == "type":
        got = _OPENAPI_TYPE_NAMES.get(type(instance), "object")
        wanted = (
            expected
            if isinstance(expected, str)
            else " or ".join(name for name in expected if name != "null")
        )
        message = f'Invalid value: "{got}": {path} in body must be of type {wanted}: "{got}"'
        return [FieldError(path, "FieldValueTypeInvalid", message)]
    if kind == "enum":
        supported = ", ".join(json.dumps(choice) for choice in expected)
        return [
            FieldError(
                path,
                "FieldValueNotSupported",
                f"Unsupported value: {json.dumps(instance)}: supported values: {supported}",
            )
        ]
    if kind == "uniqueItems":  # x-kubernetes-list-type: set
        return _duplicates(path, instance)
    if (worded := _openapi_failure(path, kind, instance, expected)) is not None:
        return [worded]
    sentences = [sentence.split(": ", 1)[-1] if path else sentence for sentence in _describe(error)]
    return [
        FieldError(
            path or "<nil>",
            "FieldValueInvalid",
            f"Invalid value: {_short(json.dumps(instance, default=str))}: {sentence}",
        )
        for sentence in sentences
    ]


def _duplicates(path: str, items: list[Any]) -> list[FieldError]:
    """One Duplicate cause per value repeated in a set list, at its first repeat, as kube-apiserver
    gives them (`["a", "a", "b", "b", "a"]`: at [1] and [3])."""
    seen: list[Any] = []
    repeated: list[Any] = []
    causes = []
    for at, item in enumerate(items):
        if item in seen and item not in repeated:
            repeated.append(item)
            causes.append(
                FieldError(f"{path}[{at}]", "FieldValueDuplicate", f"Duplicate value: {_go_value(item)}")
            )
        seen.append(item)
    return causes


# kube-openapi's words for a broken bound (k8s.io/kube-openapi/pkg/validation/errors), "<field> in body
# should …", and the field errors apiextensions-apiserver turns some of them into (TooLong, TooMany).
_BOUNDS = {
    "minimum": "greater than or equal to",
    "exclusiveMinimum": "greater than",
    "maximum": "less than or equal to",
    "exclusiveMaximum": "less than",
}


def _openapi_failure(path: str, kind: str, instance: Any, expected: Any) -> FieldError | None:
    """The cause kube-apiserver gives for a value outside its schema's bounds, pattern or format;
    None for the kinds worded elsewhere."""
    field = path or "<nil>"

    def invalid(value: Any, detail: str, reason: str = "FieldValueInvalid") -> FieldError:
        return FieldError(field, reason, f"Invalid value: {_go_value(value)}: {path} in body {detail}")

    if kind in _BOUNDS:
        return invalid(instance, f"should be {_BOUNDS[kind]} {_go_value(expected)}")
    if kind == "multipleOf":
        return invalid(instance, f"should be a multiple of {_go_value(expected)}")
    if kind == "minLength":
        return invalid(instance, f"should be at least {expected} chars long")
    if kind == "maxLength":
        return FieldError(field, "FieldValueTooLong", f"Too long: may not be more than {expected} bytes")
    if kind == "minItems":
        return invalid(len(instance), f"should have at least {expected} items")
    if kind == "maxItems":
        return FieldError(
            field, "FieldValueTooMany", f"Too many: {len(instance)}: must have at most {expected} items"
        )
    if kind == "pattern":
        return invalid(instance, f"should match '{expected}'")
    if kind == "format":
        return invalid(
            instance, f"must be of type {expected}: {_go_value(instance)}", "FieldValueTypeInvalid"
        )
    return None


def _go_value(value: Any) -> str:
    """A value as a field error prints it (Go's %v, %q for strings): a whole number as an integer (as
    kube-apiserver prints `maximum: 1000000`), any other as a float64 (`_go_float`), strings quoted with
    their characters kept."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else _go_float(value)
    if isinstance(value, bool) or value is None or isinstance(value, str | list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _go_float(value: float) -> str:
    """A float64 as Go's %v prints it: the shortest digits that read back the same, in exponent form
    from 1e+06 up and below 1e-04 (strconv's %g with the shortest precision)."""
    if math.isinf(value) or math.isnan(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "0"
    shortest = decimal.Decimal(repr(value)).normalize()  # repr: the shortest round-trip digits
    exponent = shortest.adjusted()
    if -4 <= exponent < 6:
        return format(shortest, "f")
    sign, digits, _ = shortest.as_tuple()
    mantissa = "".join(map(str, digits))
    fraction = f".{mantissa[1:]}" if len(mantissa) > 1 else ""
    return f"{'-' if sign else ''}{mantissa[0]}{fraction}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


def apply_defaults(obj: Mapping[str, Any], crd: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `obj` with the schema's `default`s filled in where fields are absent (or null but
    not nullable), recursively, as the API server does on create. `obj` itself is not changed."""
    api_version = obj.get("apiVersion")
    version = api_version.rsplit("/", 1)[-1] if isinstance(api_version, str) else None
    result = _plain(obj)
    _fill_defaults(result, _schema_of(crd, version))
    return result


# Schema translation --------------------------------------------------------------------------------


def _schema_of(crd: Mapping[str, Any], version: str | None) -> Mapping[str, Any]:
    """The openAPIV3Schema of the named version of the CRD (its storage version when not given)."""
    versions = crd["spec"]["versions"]
    for candidate in versions:
        if candidate["name"] == version or (version is None and candidate.get("storage")):
            return candidate.get("schema", {}).get("openAPIV3Schema") or {"type": "object"}
    raise KeyError(f'{crd["metadata"]["name"]} has no version "{version}"')


def to_json_schema(node: Mapping[str, Any], root: bool = False) -> dict[str, Any]:
    """One OpenAPI v3 schema node of a CRD as a JSON Schema node with the same meaning."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: {"type": "object"} if root and name == "metadata" else to_json_schema(child)
                for name, child in value.items()
            }
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(child) for child in value]
        elif key in ("x-kubernetes-validations", "nullable"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("type") == "object" and "additionalProperties" not in node:
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        # OpenAPI 3.0's exclusive bounds are flags on `minimum`/`maximum`; JSON Schema's are the bound.
        if isinstance(flag := out.pop(exclusive, None), bool) and flag and bound in out:
            out[exclusive] = out.pop(bound)
        elif flag is not None and not isinstance(flag, bool):
            out[exclusive] = flag
    if node.get("nullable"):
        _allow_null(out)
    return out


def _allow_null(out: dict[str, Any]) -> None:
    if "type" in out:
        out["type"] = [out["type"], "null"]
    if "anyOf" in out:
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]


def _unique_map_keys(
    validator: Any, keys: list[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """`x-kubernetes-list-type: map`: no two items share the values of `x-kubernetes-list-map-keys`."""
    if schema.get("x-kubernetes-list-type") != "map" or not validator.is_type(instance, "array"):
        return
    seen: set[tuple[str, ...]] = set()
    for index, item in enumerate(instance):
        identity = _map_key(item, keys)
        if identity in seen:
            yield jsonschema.ValidationError("duplicate entry", path=[index])
        seen.add(identity)


def _map_key(item: Any, keys: list[str]) -> tuple[str, ...]:
    return tuple(repr(item.get(key)) for key in keys) if isinstance(item, Mapping) else (repr(item),)


def _multiple_of(
    validator: Any, factor: float, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """`multipleOf` by kube-openapi's arithmetic (validate.MultipleOf): data / factor, or 1 / factor *
    data for a factor under 1, an integer within a relative error of 1e-9 (swag.IsFloat64AJSONInteger).
    JSON Schema's exact test refuses 0.3 as a multiple of 0.1; kube-apiserver accepts it."""
    if not validator.is_type(instance, "number") or isinstance(instance, bool):
        return
    quotient = 1 / factor * instance if factor < 1 else instance / factor
    if not _is_json_integer(float(quotient)):
        yield jsonschema.ValidationError(f"{instance} is not a multiple of {factor}")


def _is_json_integer(value: float) -> bool:
    if not math.isfinite(value):
        return False
    whole = float(math.trunc(value))
    if value == whole:
        return True
    if whole == 0:
        return False  # a fraction of one: nowhere near an integer's relative error
    return abs(value - whole) / (abs(value) + abs(whole)) < 1e-9


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"x-kubernetes-list-map-keys": _unique_map_keys, "multipleOf": _multiple_of},
)
_FORMATS = jsonschema.FormatChecker(formats=())
_OPENAPI_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    type(None): "null",
}


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    match = _RFC3339.match(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


@_FORMATS.checks("int32")
def _is_int32(value: object) -> bool:
    return _fits(value, "int32")


@_FORMATS.checks("int64")
def _is_int64(value: object) -> bool:
    return _fits(value, "int64")


def _fits(value: object, name: str) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return True
    low, high = _INT_RANGES[name]
    return low <= value <= high


# Defaults ----------------------------------------------------------------------------------------


def _fill_defaults(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name, child in properties.items():
            if name in value and value[name] is None and not child.get("nullable") and "default" in child:
                del value[name]
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _fill_defaults(value[name], child)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for name, item in value.items():
                if name not in properties:
                    _fill_defaults(item, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _fill_defaults(item, schema["items"])


# Messages ----------------------------------------------------------------------------------------


def _describe(error: jsonschema.ValidationError) -> Iterable[str]:
    """Readable sentences for one jsonschema error, each led by the field's path."""
    path = _path(error.absolute_path)
    instance, expected, kind = error.instance, error.validator_value, error.validator
    if kind == "required":
        missing = [name for name in expected if name not in instance]
        return [f"{_join(path, name)}: required field is missing" for name in missing]
    if kind == "additionalProperties" and expected is False:
        known = sorted(error.schema.get("properties") or {})
        unknown = [name for name in instance if name not in known]
        hint = f" (known fields: {', '.join(known)})" if known else " (no fields are allowed here)"
        return [f"{_join(path, name)}: unknown field{hint}" for name in unknown]
    if kind == "type":
        wanted = [expected] if isinstance(expected, str) else list(expected)
        names = " or ".join(_JSON_TYPE_NAMES.get(name, name) for name in wanted)
        return [f"{_at(path)}must be {names}, not {_type_name(instance)} ({_short(instance)})"]
    if kind == "enum":
        choices = ", ".join("null" if choice is None else str(choice) for choice in expected)
        return [f"{_at(path)}must be one of {choices}, not {_short(instance)}"]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        relation = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
        }[kind]
        return [f"{_at(path)}must be {relation} {expected}, not {_short(instance)}"]
    if kind == "minLength":
        if expected == 1:
            return [f"{_at(path)}must not be empty"]
        return [f"{_at(path)}must be at least {expected} characters long, not {len(instance)}"]
    if kind == "maxLength":
        return [f"{_at(path)}must be at most {expected} characters long, not {len(instance)}"]
    if kind in ("minItems", "maxItems"):
        relation = "at least" if kind == "minItems" else "at most"
        return [f"{_at(path)}must have {relation} {expected} items, not {len(instance)}"]
    if kind == "pattern":
        described = _PATTERN_HINTS.get(expected)
        said = f"must be {described}" if described else f"must match the pattern {expected}"
        return [f"{_at(path)}{said}, not {_short(instance)}"]
    if kind == "format":
        example = " such as 2024-05-01T12:00:00Z" if expected == "date-time" else ""
        return [f"{_at(path)}must be a valid {expected}{example}, not {_short(instance)}"]
    if kind == "x-kubernetes-list-map-keys":
        index = error.path[-1]
        first = next(
            at
            for at, item in enumerate(instance)
            if _map_key(item, expected) == _map_key(instance[index], expected)
        )
        described = " and ".join(f"{key} {instance[index].get(key)!r}" for key in expected)
        return [
            f"{_at(path)}duplicate entry: {described} is already used by {path.rsplit('[', 1)[0]}[{first}]"
        ]
    if kind == "uniqueItems":
        return [f"{_at(path)}must not contain the same item twice"]
    if kind == "oneOf" and _only_required(expected):
        # A value that is not an object at all already has its type error.
        return [_exactly_one(path, expected, instance)] if isinstance(instance, Mapping) else []
    if kind == "anyOf" and _only_types(expected):
        names = " or ".join(_JSON_TYPE_NAMES.get(branch["type"], branch["type"]) for branch in expected)
        return [f"{_at(path)}must be {names}, not {_type_name(instance)} ({_short(instance)})"]
    return [f"{_at(path)}{error.message}"]


def _exactly_one(path: str, branches: list[Mapping[str, Any]], instance: Mapping[str, Any]) -> str:
    fields = [name for branch in branches for name in branch["required"]]
    present = [name for name in fields if name in instance]
    listed = " or ".join(fields) if len(fields) == 2 else ", ".join(fields)
    if not present:
        return f"{_at(path)}set exactly one of {listed} (none is set)"
    extra = "both" if len(present) == len(fields) == 2 else " and ".join(present)
    return f"{_at(path)}set exactly one of {listed}, not {extra}"


def _only_required(branches: Any) -> bool:
    return isinstance(branches, list) and all(set(branch) == {"required"} for branch in branches)


def _only_types(branches: Any) -> bool:
    return isinstance(branches, list) and all(set(branch) == {"type"} for branch in branches)


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any) -> Any:
    """A deep copy as JSON would carry it: YAML timestamps become the RFC 3339 strings they were."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        text = value.astimezone(datetime.UTC).isoformat()
        return text.replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value
