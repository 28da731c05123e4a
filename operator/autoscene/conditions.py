"""Status conditions as the Kubernetes API conventions define them, set through one helper.

A condition is {type, status: "True" | "False" | "Unknown", reason (CamelCase), message,
lastTransitionTime (RFC 3339), observedGeneration}; `lastTransitionTime` moves only when `status`
changes (the rule of apimachinery's `meta.SetStatusCondition`).
"""

from collections.abc import Mapping, Sequence
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def with_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """`conditions` with the one of `type` set (added, or replaced in place), the others unchanged."""
    current = list(conditions or [])
    before = next((c for c in current if c.get("type") == type), None)
    condition: dict[str, Any] = {
        "type": type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": before["lastTransitionTime"]
        if before and before.get("status") == status and before.get("lastTransitionTime")
        else now,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    if before is None:
        return [*map(dict, current), condition]
    return [condition if c is before else dict(c) for c in current]


def find(conditions: Sequence[Mapping[str, Any]] | None, type: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type), None)


Readiness = tuple[str, str, str]  # (status, reason, message) of a condition


def updated(obj: Mapping[str, Any], type: str, readiness: Readiness, now: str) -> list[dict[str, Any]] | None:
    """`obj`'s conditions with the one of `type` set to `readiness` for its current generation; None
    when it already says that (nothing to write)."""
    state, reason, message = readiness
    current = (obj.get("status") or {}).get("conditions")
    before = find(current, type) or {}
    generation = obj["metadata"].get("generation")
    said = (
        before.get("status"),
        before.get("reason"),
        before.get("message"),
        before.get("observedGeneration"),
    )
    if said == (state, reason, message, generation):
        return None
    return with_condition(current, type, state, reason, message, generation, now)
