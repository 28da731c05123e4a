"""Label and field selectors, with the grammar and semantics of the Kubernetes API's query parameters."""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Requirement = Callable[[Mapping[str, Any]], bool]

_SET_REQUIREMENT = re.compile(r"^\s*([^\s!=<>(),]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_VALUE_REQUIREMENT = re.compile(r"^\s*([^\s!=<>(),]+)\s*(==|=|!=|<|>)\s*([^\s,()]*)\s*$")
_ABSENCE_REQUIREMENT = re.compile(r"^\s*!\s*([^\s!=<>(),]+)\s*$")
_PRESENCE_REQUIREMENT = re.compile(r"^\s*([^\s!=<>(),]+)\s*$")


class SelectorError(ValueError):
    """A selector the API server would answer with 400 Bad Request."""


def _split_outside_parentheses(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _label_requirement(text: str) -> Requirement:
    if match := _SET_REQUIREMENT.match(text):
        key, operator, values_text = match.groups()
        values = {value.strip() for value in values_text.split(",") if value.strip()}
        if operator == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    if match := _VALUE_REQUIREMENT.match(text):
        key, operator, value = match.groups()
        if operator in ("=", "=="):
            return lambda labels: labels.get(key) == value
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return _numeric_requirement(key, operator, value)
    if match := _ABSENCE_REQUIREMENT.match(text):
        absent_key = match.group(1)
        return lambda labels: absent_key not in labels
    if match := _PRESENCE_REQUIREMENT.match(text):
        present_key = match.group(1)
        return lambda labels: present_key in labels
    raise SelectorError(f"unable to parse requirement: {text!r}")


def _numeric_requirement(key: str, operator: str, value: str) -> Requirement:
    try:
        bound = int(value)
    except ValueError:
        raise SelectorError(f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}") from None

    def compare(labels: Mapping[str, Any]) -> bool:
        try:
            number = int(labels[key])
        except (KeyError, ValueError):
            return False
        return number > bound if operator == ">" else number < bound

    return compare


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "LabelSelector":
        return cls(tuple(_label_requirement(part) for part in _split_outside_parentheses(text or "")))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """A field as the API server compares it in field selectors: a string, empty when absent."""
    value: Any = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (field path, must equal, value)

    @classmethod
    def parse(cls, text: str | None) -> "FieldSelector":
        terms = []
        for part in _split_outside_parentheses(text or ""):
            match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
            if not match:
                raise SelectorError(f"invalid field selector: {part!r}")
            path, operator, value = match.groups()
            terms.append((path, operator != "!=", value))
        return cls(tuple(terms))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in self.terms)

    def required_value(self, path: str) -> str | None:
        """The value a field must equal, to narrow a lookup (e.g. by name) before scanning."""
        return next((value for term_path, equal, value in self.terms if term_path == path and equal), None)


@dataclass(frozen=True)
class Selection:
    """Which objects of a resource a list or a watch is about."""

    namespace: str | None = None
    labels: LabelSelector = LabelSelector()
    fields: FieldSelector = FieldSelector()

    @classmethod
    def parse(cls, namespace: str | None, label_text: str | None, field_text: str | None) -> "Selection":
        return cls(namespace, LabelSelector.parse(label_text), FieldSelector.parse(field_text))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        in_namespace = self.namespace is None or obj.get("metadata", {}).get("namespace") == self.namespace
        return in_namespace and self.labels.matches(obj) and self.fields.matches(obj)
