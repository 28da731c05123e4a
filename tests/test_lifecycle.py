"""The Invocation lifecycle's table: every phase against every phase, and what each move sets off."""

import itertools
from typing import Any

import pytest

from autoscene import lifecycle
from autoscene.lifecycle import CANCELLED, FAILED, PENDING, QUEUED, RUNNING, SUCCEEDED, Effect

PHASES = [None, PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED]

# The moves a run can make, written out from the lifecycle's rules rather than from its table:
# nothing leaves a final phase; a run leaves the queue only to wait for its new Job (or to fail);
# a run that ran is not queued again; a run without any phase starts waiting, queued, or fails;
# any run not over may be cancelled.
ALLOWED = {
    (None, PENDING), (None, QUEUED), (None, FAILED),
    (PENDING, PENDING), (PENDING, QUEUED), (PENDING, RUNNING), (PENDING, SUCCEEDED), (PENDING, FAILED),
    (QUEUED, QUEUED), (QUEUED, PENDING), (QUEUED, FAILED),
    (RUNNING, RUNNING), (RUNNING, PENDING), (RUNNING, SUCCEEDED), (RUNNING, FAILED),
} | {(phase, CANCELLED) for phase in (None, PENDING, QUEUED, RUNNING)}  # fmt: skip


@pytest.mark.parametrize(("current", "wanted"), list(itertools.product(PHASES, PHASES[1:])))
def test_which_phase_may_follow_which(current: str | None, wanted: str) -> None:
    assert lifecycle.may_move(current, wanted) == ((current, wanted) in ALLOWED)


@pytest.mark.parametrize("current", PHASES)
def test_a_status_without_a_phase_change_never_moves_the_phase(current: str | None) -> None:
    assert lifecycle.may_move(current, None)


def run(phase: str | None = None, reason: str | None = None, **fields: Any) -> dict[str, Any]:
    """A status: its phase and reason, and any other fields."""
    found = {"phase": phase, "reason": reason, **fields}
    return {key: value for key, value in found.items() if value is not None}


@pytest.mark.parametrize(
    ("current", "wanted", "written"),
    [
        # a new run waits for its Job
        (run(), run(PENDING, "JobCreated", jobName="j"), {"phase", "reason", "jobName"}),
        # only what differs is written
        (run(RUNNING, "Running"), run(RUNNING, "Running", attempts=1), {"attempts"}),
        # a final run is never rewritten, whatever arrives late
        (run(SUCCEEDED), run(FAILED, "JobLost"), set()),
        (run(FAILED, "BackoffLimitExceeded"), run(FAILED, "JobLost"), set()),
        # "Job created" from a retried start loses to the Job's own progress
        (run(RUNNING, jobName="j"), run(PENDING, "JobCreated", jobName="j"), set()),
        # ... but a retry's new Pod that waits again is news
        (run(RUNNING, jobName="j"), run(PENDING, "PodPending", jobName="j"), {"phase", "reason"}),
        # a run waiting for its Action is not over: it starts when the Action appears
        (run(PENDING, "ActionNotFound"), run(PENDING, "JobCreated", jobName="j"), {"reason", "jobName"}),
        # "its Pod is pending" is no news after "Job created"
        (run(PENDING, "JobCreated", jobName="j"), run(PENDING, "PodPending", jobName="j"), set()),
        (run(PENDING, "JobCreated", jobName="j"), run(PENDING, "ErrImagePull", jobName="j"), {"reason"}),
        # a queued run is never taken for a running one
        (run(RUNNING, jobName="j"), run(QUEUED, "ConcurrencyLimit"), set()),
    ],
)
def test_the_fields_a_wanted_status_changes(
    current: dict[str, Any], wanted: dict[str, Any], written: set[str]
) -> None:
    assert set(lifecycle.changes(current, wanted)) == written


FINISHING = {Effect.EVENT, Effect.RELEASE_SLOT, Effect.COUNT_FINISHED, Effect.APPLY_RETENTION}


@pytest.mark.parametrize(
    ("previous", "update", "expected"),
    [
        (run(), run(PENDING, "JobCreated", jobName="j"), {Effect.EVENT, Effect.COUNT_DISPATCH}),
        (run(), run(PENDING, "ActionNotFound"), {Effect.EVENT}),
        (run(), run(QUEUED, "ConcurrencyLimit"), {Effect.EVENT}),
        # starting to run is no Event of ours (the Pod's own Events say it)
        (run(PENDING), run(RUNNING, "Running"), set()),
        (run(RUNNING), run(PENDING, "ImagePullBackOff"), {Effect.EVENT}),
        (run(RUNNING), run(SUCCEEDED, "Completed"), FINISHING),
        (run(RUNNING), run(FAILED, "PodFailurePolicy"), FINISHING),
        (run(), run(FAILED, "RecordNotFound"), FINISHING),
        (run(QUEUED), run(CANCELLED, "Cancelled"), FINISHING),
        # progress within a phase (attempts, a log line) is no news
        (run(RUNNING), run(attempts=2), set()),
    ],
)
def test_what_a_move_sets_off(
    previous: dict[str, Any], update: dict[str, Any], expected: set[Effect]
) -> None:
    assert lifecycle.effects(previous, update) == expected
