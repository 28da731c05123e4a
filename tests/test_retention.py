from datetime import UTC, datetime
from typing import Any

from autoscene.retention import invocations_to_prune

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def run(name: str, phase: str | None, finished: str | None) -> dict[str, Any]:
    status = {"phase": phase, "completionTime": finished} if phase else {}
    return {"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": status}


HISTORY = [
    run("oldest", "Succeeded", "2026-03-01T00:00:00Z"),
    run("older", "Failed", "2026-03-05T00:00:00Z"),
    run("newer", "Succeeded", "2026-03-09T00:00:00Z"),
    run("newest", "Succeeded", "2026-03-10T11:00:00Z"),
    run("running", "Running", None),
    run("pending", None, None),
]


def test_no_policy_keeps_everything() -> None:
    assert invocations_to_prune(HISTORY, None, NOW) == []
    assert invocations_to_prune(HISTORY, {}, NOW) == []


def test_keep_last_keeps_the_newest_finished_runs() -> None:
    assert invocations_to_prune(HISTORY, {"keepLast": 2}, NOW) == ["older", "oldest"]


def test_max_age_drops_older_finished_runs() -> None:
    assert invocations_to_prune(HISTORY, {"maxAgeDays": 3}, NOW) == ["older", "oldest"]
    assert invocations_to_prune(HISTORY, {"maxAgeDays": 30}, NOW) == []


def test_both_bounds_apply_and_unfinished_runs_are_never_pruned() -> None:
    pruned = invocations_to_prune(HISTORY, {"keepLast": 3, "maxAgeDays": 7}, NOW)
    assert pruned == ["oldest"]
    assert not {"running", "pending"} & set(invocations_to_prune(HISTORY, {"keepLast": 1}, NOW))


def test_runs_finished_in_the_same_second_go_by_registration_order() -> None:
    same_second = [run(f"run{n}", "Succeeded", "2026-03-10T11:00:00Z") for n in range(3)]
    for n, invocation in enumerate(same_second):
        invocation["metadata"]["annotations"] = {
            "autoscene.io/file-added-at": f"2026-03-10T10:59:59.{n}00000Z"
        }
    assert invocations_to_prune(same_second[::-1], {"keepLast": 1}, NOW) == ["run1", "run0"]
