"""Which finished Invocations a Trigger's retention policy lets go, so a busy Trigger does not fill etcd."""

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from . import labels, lifecycle, timestamps


def invocations_to_prune(
    invocations: Iterable[Mapping[str, Any]], policy: Mapping[str, Any] | None, now: datetime
) -> list[str]:
    """Names of the finished Invocations beyond `keepLast` (newest kept) or older than `maxAgeDays`.

    Unfinished runs are never pruned, and do not count towards `keepLast`.
    """
    if not policy:
        return []
    finished = sorted(
        (inv for inv in invocations if _is_over(inv.get("status") or {})),
        key=_newness,
        reverse=True,
    )
    keep_last, max_age_days = policy.get("keepLast"), policy.get("maxAgeDays")
    oldest_kept = now - timedelta(days=max_age_days) if max_age_days else None
    prune = []
    for rank, invocation in enumerate(finished):
        too_many = keep_last is not None and rank >= keep_last
        too_old = oldest_kept is not None and _finished_at(invocation) < oldest_kept
        if too_many or too_old:
            prune.append(invocation["metadata"]["name"])
    return prune


def _is_over(run_status: Mapping[str, Any]) -> bool:
    return lifecycle.is_finished(run_status)


def _newness(invocation: Mapping[str, Any]) -> tuple[datetime, str, str]:
    """Finish time first; API times have second precision, so ties go by when the file was registered."""
    meta = invocation["metadata"]
    added = (meta.get("annotations") or {}).get(labels.FILE_ADDED_AT, "")
    return _finished_at(invocation), added, meta.get("creationTimestamp", "")


def _finished_at(invocation: Mapping[str, Any]) -> datetime:
    stamp = (invocation.get("status") or {}).get("completionTime") or invocation["metadata"][
        "creationTimestamp"
    ]
    return timestamps.parse(stamp)
