"""The labels and annotations autoscene puts on the objects it creates."""

import re

from . import naming

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "autoscene"
INVOCATION = "autoscene.io/invocation"
ACTION = "autoscene.io/action"
RECORD = "autoscene.io/record"
TRIGGER = "autoscene.io/trigger"
FILE_ADDED_AT = "autoscene.io/file-added-at"
# What a helper Pod or Job of the operator's is for (an uploader, a publish Job, a log keeper); a run's
# own Job has none.
ROLE = "autoscene.io/role"
# The Jobs that run Invocations, without the helpers: `kubectl get jobs -l '<this>'`.
RUN_JOBS = f"{INVOCATION},!{ROLE}"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def for_invocation(*, action: str, record: str, trigger: str | None) -> dict[str, str]:
    """Labels for selecting Invocations by action, record and trigger (`kubectl get inv -l ...`)."""
    return _usable({MANAGED_BY: MANAGER, ACTION: action, RECORD: record, TRIGGER: trigger or ""})


def for_claim(record: str) -> dict[str, str]:
    return _usable({MANAGED_BY: MANAGER, RECORD: record})


def for_file(record: str) -> dict[str, str]:
    """Labels of a Record's RecordFiles: `kubectl get recordfiles -l autoscene.io/record=NAME`."""
    return _usable({MANAGED_BY: MANAGER, RECORD: record})


def value_of(name: str) -> str:
    """An object name as a label value: itself when it fits (63 characters), else shortened with a
    hash of the whole name, so that two long names never share a value."""
    return name if is_label_value(name) else naming.fitted(name, 63)


def _usable(candidates: dict[str, str]) -> dict[str, str]:
    return {key: value_of(value) for key, value in candidates.items() if value}


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.match(value) is not None
