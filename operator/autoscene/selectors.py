"""Label selectors (`matchLabels` / `matchExpressions`) evaluated the way the API server does."""

from collections.abc import Mapping
from typing import Any


class InvalidSelectorError(ValueError):
    """The selector uses an unknown operator or misses the values its operator needs."""


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether a LabelSelector selects an object with these labels; an empty selector selects all."""
    labels = labels or {}
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression_holds(expression, labels) for expression in selector.get("matchExpressions") or [])


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator in ("In", "NotIn") and not values:
        raise InvalidSelectorError(f"operator {operator} on {key!r} needs at least one value")
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise InvalidSelectorError(f"unknown label selector operator {operator!r}")
