"""Invocations as the rows of a run-history table, the way `kubectl get invocations -o wide` reads."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from . import timestamps

COLUMNS = ("NAME", "ACTION", "RECORD", "FILE", "PHASE", "DURATION", "EXIT", "AGE", "MESSAGE")


def invocation_rows(invocations: Iterable[Mapping[str, Any]], now: datetime) -> list[tuple[str, ...]]:
    """One row per Invocation, oldest first, every cell a string ('' where nothing is known yet)."""
    ordered = sorted(
        invocations, key=lambda inv: (inv["metadata"].get("creationTimestamp", ""), inv["metadata"]["name"])
    )
    return [_row(invocation, now) for invocation in ordered]


def _row(invocation: Mapping[str, Any], now: datetime) -> tuple[str, ...]:
    meta, spec, status = invocation["metadata"], invocation["spec"], invocation.get("status") or {}
    created = meta.get("creationTimestamp")
    age = timestamps.human_duration((now - timestamps.parse(created)).total_seconds()) if created else ""
    exit_code = status.get("exitCode")
    return (
        meta["name"],
        spec.get("action", ""),
        spec.get("record", ""),
        spec.get("file", ""),
        status.get("phase", ""),
        status.get("duration", ""),
        "" if exit_code is None else str(exit_code),
        age,
        status.get("message", ""),
    )
