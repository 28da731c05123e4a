"""The labels and annotations autoscene puts on the objects it creates."""

import re

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "autoscene"
INVOCATION = "autoscene.io/invocation"
ACTION = "autoscene.io/action"
RECORD = "autoscene.io/record"
TRIGGER = "autoscene.io/trigger"
FILE_ADDED_AT = "autoscene.io/file-added-at"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def for_invocation(*, action: str, record: str, trigger: str | None) -> dict[str, str]:
    """Labels for selecting Invocations by action, record and trigger (`kubectl get inv -l ...`)."""
    return _usable({MANAGED_BY: MANAGER, ACTION: action, RECORD: record, TRIGGER: trigger or ""})


def for_claim(record: str) -> dict[str, str]:
    return _usable({MANAGED_BY: MANAGER, RECORD: record})


def _usable(candidates: dict[str, str]) -> dict[str, str]:
    # Object names may be longer than a label value allows; such a name is left out, not mangled.
    return {key: value for key, value in candidates.items() if value and is_label_value(value)}


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.match(value) is not None
