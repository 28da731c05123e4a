"""CEL validation rules of CRD schemas (`x-kubernetes-validations`), evaluated as kube-apiserver does.

Each rule is checked where it is declared, with `self` bound to the value there: on an object's
properties, on the values of a map (`additionalProperties`, path `field[key]`) and on the items of a
list (path `field[index]`). A rule on a field that is absent is not evaluated. A transition rule (one
that names `oldSelf`) is checked only on an update, and only where the old object has a value at the
same place: properties and map values by their key, items of a `x-kubernetes-list-type: map` list by
their map keys (items of other lists have no old value). On an update a rule that does not name
`oldSelf` is skipped where the value did not change (validation ratcheting, as Kubernetes does since
1.30). A failed rule is reported as kube-apiserver v1.37 reports it: a `FieldValueInvalid` cause at
the rule's field, with the message `Invalid value: <message>` on an object or a list and
`Invalid value: <value>: <message>` on a string, number or boolean (`"text"`, `3`, `false`); the
message is the rule's `message`, else its `messageExpression`'s result, else `failed rule: <rule>`. A
rule that cannot be evaluated (a field it reads is absent) says `Invalid value: "<type>": <error>
evaluating rule: <rule>`.

The expressions are evaluated by cel-python (`celpy`), which implements the CEL language itself:
literals, field selection, `has()`, `!`, `&&`, `||`, `?:`, comparisons and (deep) equality of maps
and lists, arithmetic, `in`, `size()`, the macros `all`, `exists`, `exists_one`, `map` and `filter`,
and the string functions `contains`, `startsWith`, `endsWith` and `matches`. Kubernetes' own CEL
libraries (quantity, url, ip, cidr, `isSorted`, `sum`, `indexOf`, `format`, `optional` types), the
rules' `fieldPath`, `reason` and `optionalOldSelf`, and the cost budget are not implemented: the
CRDs' rules use none of them, and kube-apiserver checks the cost when the CRD is created.
"""

import contextlib
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import celpy

# The cause kube-apiserver adds when errors that stop CEL evaluation (a missing required field, a
# value of the wrong type or not in its enum) leave the rules unchecked.
RULES_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; correct the existing errors "
    "to complete validation"
)
_ABSENT = object()
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_IMMUTABLE = re.compile(r"\s*(self\s*==\s*oldSelf|oldSelf\s*==\s*self)\s*")


@dataclass(frozen=True)
class RuleViolation:
    """One failed rule: the field it is declared on (`spec.storage`) and its cause's message, worded
    as kube-apiserver words it (`Invalid value: set exactly one of size or claimName, not both`)."""

    field: str
    message: str


class RuleError(Exception):
    """A rule that cannot be compiled or evaluated here."""


def has_rules(schema: Mapping[str, Any] | None) -> bool:
    """Whether the schema declares any `x-kubernetes-validations` rule, at any depth."""
    if not isinstance(schema, Mapping):
        return False
    if schema.get("x-kubernetes-validations"):
        return True
    children: list[Any] = [*(schema.get("properties") or {}).values()]
    children += [schema.get("items"), schema.get("additionalProperties")]
    return any(has_rules(child) for child in children if isinstance(child, Mapping))


def violations(obj: Any, schema: Mapping[str, Any] | None, old: Any = None) -> list[RuleViolation]:
    """The rules of `schema` that `obj` breaks; `old` is the stored object on an update, else None."""
    if not isinstance(schema, Mapping):
        return []
    found: list[RuleViolation] = []
    for path, value, old_value, node in _nodes(obj, old if old is not None else _ABSENT, schema, ""):
        for rule in node.get("x-kubernetes-validations") or ():
            if (message := _failure(rule, value, old_value, node)) is not None:
                found.append(RuleViolation(path or "<nil>", message))
    return found


def _nodes(value: Any, old: Any, schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, Any, Any, Any]]:
    """(path, value, old value or _ABSENT, schema) of every present value that has a schema, the
    object's own first, then its properties', map values' and items' depth first."""
    yield path, value, old, schema
    if isinstance(value, Mapping):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        old_map = old if isinstance(old, Mapping) else {}
        for key, item in value.items():
            child = properties.get(key, additional if isinstance(additional, Mapping) else None)
            if not isinstance(child, Mapping):
                continue
            where = f"{path}.{key}" if key in properties else f"{path}[{key}]"
            yield from _nodes(item, old_map.get(key, _ABSENT), child, where.lstrip("."))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        olds = _correlated_items(value, old, schema)
        for index, item in enumerate(value):
            yield from _nodes(item, olds[index], schema["items"], f"{path}[{index}]")


def _correlated_items(items: list[Any], old: Any, schema: Mapping[str, Any]) -> list[Any]:
    """Each item's old value: the old item with the same map keys in a map list, else none."""
    keys = schema.get("x-kubernetes-list-map-keys") or ()
    if schema.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list):
        return [_ABSENT] * len(items)

    def key_of(item: Any) -> tuple[Any, ...] | None:
        return tuple(item.get(key) for key in keys) if isinstance(item, Mapping) else None

    by_key = {key_of(item): item for item in old}
    return [by_key.get(key_of(item), _ABSENT) for item in items]


def _failure(rule: Mapping[str, Any], value: Any, old: Any, schema: Mapping[str, Any]) -> str | None:
    """The cause's message of a failed rule, None when it holds or does not apply here."""
    text = str(rule.get("rule") or "")
    transition = _names_old_self(text)
    if transition and old is _ABSENT:
        return None  # transition rules need an old value: not on create, not for a new field
    if not transition and old is not _ABSENT and old == value:
        return None  # ratcheting: an unchanged value keeps passing
    if transition and old == value and _IMMUTABLE.fullmatch(text):
        return None  # the immutability rule on an unchanged value: most writes, no need to evaluate
    activation = {"self": celpy.json_to_cel(value)}
    if transition:
        activation["oldSelf"] = celpy.json_to_cel(old)
    try:
        result = _program(text).evaluate(activation)
    except (celpy.CELEvalError, RuleError) as error:  # kube-apiserver refuses a CRD whose rule won't compile
        why = _evaluation_error(error)
        return f"Invalid value: {json.dumps(str(schema.get('type') or ''))}: {why} evaluating rule: {text}"
    if isinstance(result, bool | celpy.celtypes.BoolType) and bool(result):
        return None
    message = f"failed rule: {text}"
    if rule.get("message"):
        message = str(rule["message"]).strip()
    elif rule.get("messageExpression"):
        with contextlib.suppress(celpy.CELEvalError, RuleError):
            message = str(_program(str(rule["messageExpression"])).evaluate(activation)).strip() or message
    if isinstance(value, Mapping | list):
        return f"Invalid value: {message}"
    return f"Invalid value: {json.dumps(value, ensure_ascii=False)}: {message}"


def _evaluation_error(error: Exception) -> str:
    """cel-go's words for the errors the rules can meet (a field read where it is absent)."""
    text = str(error.args[0]) if error.args else str(error)
    if (absent := re.fullmatch(r"no such member in mapping: '(.*)'", text)) is not None:
        return f"no such key: {absent.group(1)}"
    return text


def _names_old_self(text: str) -> bool:
    """Whether the rule reads `oldSelf` (outside string literals): then it is a transition rule."""
    code = _STRING_LITERAL.sub("", text)
    return re.search(r"\boldSelf\b", code) is not None


@functools.lru_cache(maxsize=256)
def _program(text: str) -> celpy.Runner:
    environment = _environment()
    try:
        return environment.program(environment.compile(text))
    except celpy.CELParseError as error:
        raise RuleError(f"cannot compile the rule {text!r}: {error}") from None


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()
