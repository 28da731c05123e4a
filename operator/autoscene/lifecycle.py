"""The Invocation lifecycle: its phases, the moves allowed between them, and what each move sets off.

Pure: no I/O. `invocations.write` is the one writer of an Invocation's status; it asks `changes` which
fields a wanted status may change, and after a write it carries out `effects` of the move. The rules
are a table so that a reader (and the tests) can see them whole:

    from \\ to   Pending  Queued  Running  Succeeded  Failed  Cancelled
    (none)       yes      yes     -        -          yes     yes     (new; Failed: no Record)
    Pending      yes      yes     yes      yes        yes     yes
    Queued       yes      yes     -        -          yes     yes     (leaves the queue when its Job is made)
    Running      yes      -       yes      yes        yes     yes     (Pending: a retry's new Pod)
    Succeeded    -        -       -        -          -       -       (final)
    Failed       -        -       -        -          -       -       (final)
    Cancelled    -        -       -        -          -       -       (final: stopped on request)

A run waiting for its Action stays Pending (reason ActionNotFound) and starts when the Action appears.
"""

import enum
from collections.abc import Mapping
from typing import Any

PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED = "Pending", "Queued", "Running", "Succeeded", "Failed"
CANCELLED = "Cancelled"
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
JOB_CREATED = "JobCreated"
POD_PENDING = "PodPending"

MOVES: Mapping[str | None, frozenset[str]] = {
    None: frozenset({PENDING, QUEUED, FAILED, CANCELLED}),
    PENDING: frozenset({PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED}),
    QUEUED: frozenset({PENDING, QUEUED, FAILED, CANCELLED}),
    RUNNING: frozenset({PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


class Effect(enum.Enum):
    """What a written move sets off, beside the status itself."""

    EVENT = "an Event on the Invocation (a Warning when it failed)"
    COUNT_DISPATCH = "count the run as started, with the registration→Job latency"
    RELEASE_SLOT = "free its concurrency slot and start the next queued run"
    COUNT_FINISHED = "count the run as finished, by phase, with its duration"
    APPLY_RETENTION = "prune the Trigger's history under its retention policy"


ENTERING_FINISHED = frozenset({Effect.RELEASE_SLOT, Effect.COUNT_FINISHED, Effect.APPLY_RETENTION})


def may_move(current: str | None, wanted: str | None) -> bool:
    """Whether phase `wanted` may follow `current` (None: no phase yet, or no phase change asked)."""
    return wanted is None or wanted in MOVES.get(current, frozenset())


def changes(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `wanted` to write over the `current` status: none when the move is not allowed
    (a final run, a stale report such as "Job created" arriving after the Job's own progress)."""
    phase = current.get("phase")
    if not may_move(phase, wanted.get("phase")) or _stale(current, wanted):
        return {}
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def _stale(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    # A retried start reports the Job it made; once that Job's progress is written, the report is old.
    # And "its Pod is pending" says nothing that "Job created" did not (the Pod is what it waits for).
    same_job = current.get("jobName") == wanted.get("jobName")
    return bool(
        same_job
        and (
            (wanted.get("reason") == JOB_CREATED and current.get("phase") not in (None, PENDING))
            or (wanted.get("reason") == POD_PENDING and current.get("reason") == JOB_CREATED)
        )
    )


def effects(previous: Mapping[str, Any], update: Mapping[str, Any]) -> frozenset[Effect]:
    """What the written `update` over `previous` sets off (empty when nothing a user sees changed).

    No Event for starting to run: the Pod's own Events say so, and a run's Events stay few (JobCreated,
    then how it ended, or what it waits for)."""
    if "phase" not in update and "reason" not in update:
        return frozenset()
    found = set() if update.get("phase") == RUNNING else {Effect.EVENT}
    if update.get("reason") == JOB_CREATED:
        found.add(Effect.COUNT_DISPATCH)
    if update.get("phase") in FINISHED and previous.get("phase") not in FINISHED:
        found |= ENTERING_FINISHED
    return frozenset(found)


def is_finished(current: Mapping[str, Any]) -> bool:
    return current.get("phase") in FINISHED
