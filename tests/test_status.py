import json
from typing import Any

from autoscene.status import LOG_TAIL_CHARS, from_job, parse_termination_message

START, END = "2026-01-01T10:00:00Z", "2026-01-01T10:01:05Z"


def job(**job_status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "run-1"}, "status": job_status}


def pod(message: str = "", exit_code: int = 0, created: str = START) -> dict[str, Any]:
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
    }
    return {
        "metadata": {"creationTimestamp": created},
        "status": {"containerStatuses": [{"name": "action", "state": {"terminated": terminated}}]},
    }


def condition(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": END}


SUMMARY = json.dumps(
    {"message": "extracted 48 frames", "outputs": {"count": 49, "bytes": 1000, "paths": ["a/1.jpg"] * 9}}
)


def test_a_job_not_started_is_pending() -> None:
    status = from_job(job(), [])
    assert status["phase"] == "Pending" and status["jobName"] == "run-1"


def container_state(**state: Any) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": START},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "action", "state": state}]},
    }


def test_an_active_job_is_running_once_its_action_runs() -> None:
    status = from_job(job(startTime=START, active=1), [container_state(running={"startedAt": START})])
    assert status["phase"] == "Running" and status["startTime"] == START and "completionTime" not in status


def test_an_active_job_whose_pod_waits_says_what_for() -> None:
    waiting = container_state(waiting={"reason": "ImagePullBackOff", "message": "pull access denied"})
    status = from_job(job(startTime=START, active=1), [waiting])
    assert status["phase"] == "Pending" and status["reason"] == "ImagePullBackOff"
    assert status["message"] == "ImagePullBackOff: pull access denied"
    assert from_job(job(startTime=START, active=1), [])["phase"] == "Pending"


def test_an_actions_odd_report_cannot_break_the_status() -> None:
    report = json.dumps({"message": "ok", "outputs": {"count": "many", "bytes": -5, "paths": ["a", 3]}})
    status = from_job(
        job(startTime=START, completionTime=END, conditions=[condition("Complete")]), [pod(report)]
    )
    assert status["outputs"] == {"count": 0, "bytes": 0, "paths": ["a"]}


def test_a_complete_job_succeeded_with_its_summary() -> None:
    status = from_job(
        job(startTime=START, completionTime=END, succeeded=1, conditions=[condition("Complete")]),
        [pod(SUMMARY)],
    )
    assert status["phase"] == "Succeeded"
    assert status["exitCode"] == 0
    assert status["message"] == "extracted 48 frames"
    assert status["outputs"] == {"count": 49, "bytes": 1000, "paths": ["a/1.jpg"] * 5}
    assert status["duration"] == "1m5s"
    assert status["completionTime"] == END


def test_a_failed_job_reports_the_newest_pods_exit_code_and_log_tail() -> None:
    log = "\n".join(f"line {n}" for n in range(200)) + "\nclip.mp4: not a readable video"
    status = from_job(
        job(startTime=START, failed=2, conditions=[condition("Failed", "BackoffLimitExceeded", "backoff")]),
        [pod("old", 3, created="2026-01-01T10:00:00Z"), pod(log, 1, created="2026-01-01T10:00:30Z")],
    )
    assert status["phase"] == "Failed" and status["reason"] == "BackoffLimitExceeded"
    assert status["exitCode"] == 1
    assert status["message"] == "clip.mp4: not a readable video"
    assert status["logTail"].endswith("clip.mp4: not a readable video")
    assert len(status["logTail"]) <= LOG_TAIL_CHARS and "line 0\n" not in status["logTail"]
    assert status["completionTime"] == END and status["attempts"] == 2


def test_a_deadline_failure_without_a_message_says_so() -> None:
    status = from_job(
        job(
            startTime=START,
            failed=1,
            conditions=[condition("Failed", "DeadlineExceeded", "active longer than 60s")],
        ),
        [],
    )
    assert status["reason"] == "DeadlineExceeded" and status["message"] == "active longer than 60s"


def test_termination_messages() -> None:
    assert parse_termination_message("") == {}
    assert parse_termination_message('{"message": "ok"}') == {"message": "ok"}
    assert parse_termination_message("Traceback\nValueError: bad")["message"] == "ValueError: bad"
    assert parse_termination_message("[1, 2]")["message"] == "[1, 2]"


def test_the_succeeded_condition_follows_the_phase_and_keeps_its_transition_time() -> None:
    from autoscene.status import with_condition

    pending = with_condition({}, {"phase": "Pending", "reason": "JobCreated", "message": "m"}, 1, "T1")
    assert pending["conditions"] == [
        {
            "type": "Succeeded",
            "status": "Unknown",
            "reason": "JobCreated",
            "message": "m",
            "lastTransitionTime": "T1",
            "observedGeneration": 1,
        }
    ]
    assert pending["observedGeneration"] == 1
    running = with_condition(pending, {**pending, "phase": "Running", "reason": "Running"}, 1, "T2")
    assert running["conditions"][0]["lastTransitionTime"] == "T1"  # still Unknown: no transition
    failed = with_condition(running, {**running, "phase": "Failed", "reason": "PodFailurePolicy"}, 1, "T3")
    [condition] = failed["conditions"]
    assert (condition["status"], condition["reason"], condition["lastTransitionTime"]) == (
        "False",
        "PodFailurePolicy",
        "T3",
    )
    done = with_condition({}, {"phase": "Succeeded", "reason": "Completed"}, None, "T4")
    assert done["conditions"][0]["status"] == "True" and "observedGeneration" not in done["conditions"][0]
    assert "observedGeneration" not in done


def test_the_pods_are_read_only_when_the_job_status_leaves_something_out() -> None:
    from autoscene.status import needs_pods

    # the Job controller's own counts: no Pod yet, or a ready one, say all there is to say
    assert not needs_pods(job())
    assert not needs_pods(job(startTime=START, active=1, ready=1))
    assert from_job(job(startTime=START, active=1, ready=1), [])["phase"] == "Running"
    # why an active Pod is not ready (an image pull failing...), or how a finished one ended
    assert needs_pods(job(startTime=START, active=1, ready=0))
    assert needs_pods(job(succeeded=1, conditions=[condition("Complete")]))
    assert needs_pods(job(failed=1, conditions=[condition("Failed", "BackoffLimitExceeded")]))
