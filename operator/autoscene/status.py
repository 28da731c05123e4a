"""An Invocation's status, read off its Job and the Job's Pods (never guessed)."""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from . import conditions, jobs, timestamps
from .lifecycle import CANCELLED, FAILED, FINISHED, PENDING, QUEUED, RUNNING, SUCCEEDED

__all__ = ["CANCELLED", "FAILED", "FINISHED", "PENDING", "QUEUED", "RUNNING", "SUCCEEDED"]
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 2048


def from_job(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Invocation status that the Job's status and its newest Pod's container state say."""
    job_status = job.get("status") or {}
    finished = {
        condition["type"]: condition
        for condition in job_status.get("conditions") or []
        if condition.get("status") == "True" and condition["type"] in ("Complete", "Failed")
    }
    terminated = _terminated_state(newest(pods))
    report = parse_termination_message((terminated or {}).get("message", ""))
    attempts = sum(int(job_status.get(count) or 0) for count in ("succeeded", "failed", "active"))
    # (No attempts yet is said by the phase; writing 0 would cost a write that says nothing new.)
    status: dict[str, Any] = {"jobName": job["metadata"]["name"], "attempts": attempts or None}
    if job_status.get("startTime"):
        status["startTime"] = job_status["startTime"]
    if finished and terminated is not None and "exitCode" in terminated:
        # Once the Job ended: its Pod's end seen first would cost a write that the Job's end repeats.
        status["exitCode"] = int(terminated["exitCode"])
    if "Complete" in finished:
        status.update(phase=SUCCEEDED, reason="Completed")
        status["completionTime"] = job_status.get("completionTime") or finished["Complete"].get(
            "lastTransitionTime"
        )
        status["message"] = report.get("message") or "completed"
    elif "Failed" in finished:
        condition = finished["Failed"]
        status.update(phase=FAILED, reason=condition.get("reason") or "Failed")
        status["completionTime"] = condition.get("lastTransitionTime") or job_status.get("completionTime")
        status["message"] = report.get("message") or condition.get("message") or "the job failed"
    else:
        status.update(_progress(newest(pods), int(job_status.get("ready") or 0)))
    if "outputs" in report:
        status["outputs"] = report["outputs"]
    if report.get("logTail"):
        status["logTail"] = report["logTail"]
    if status.get("startTime") and status.get("completionTime"):
        elapsed = timestamps.parse(status["completionTime"]) - timestamps.parse(status["startTime"])
        status["duration"] = timestamps.human_duration(elapsed.total_seconds())
    return {key: value for key, value in status.items() if value is not None}


def needs_pods(job: Mapping[str, Any]) -> bool:
    """Whether the Job's own status leaves something to read off its Pods: a finished run's exit code
    and termination message, or why an active Pod is not ready yet (an image pull failing...). A Job
    with a ready Pod is running (the Job controller's `status.ready`), and one with no Pod yet has none.
    """
    job_status = job.get("status") or {}
    finished = job_ended(job) is not None
    return finished or (int(job_status.get("active") or 0) > 0 and not int(job_status.get("ready") or 0))


def job_ended(job: Mapping[str, Any]) -> str | None:
    """How the Job ended, "Complete" or "Failed" (its condition of that type is True); None while on."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


# The waiting reasons of a container on its way to run (the kubelet's, k8s.io/kubernetes pkg/kubelet);
# any other means trouble a user should read about (ErrImagePull, CreateContainerConfigError, ...).
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})


def trouble_of(pod: Mapping[str, Any]) -> str | None:
    """Why the action's container waits, when that is not just its start (a reason outside
    `STARTING_REASONS`, with its message); None otherwise."""
    waiting = (_action_state(pod) or {}).get("waiting") or {}
    if waiting.get("reason") and waiting["reason"] not in STARTING_REASONS:
        return f"{waiting['reason']}: {waiting.get('message') or ''}"
    return None


def _action_state(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The state of the Pod's action container (`running`, `terminated` or `waiting`); None before
    the kubelet reports it."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == jobs.ACTION_CONTAINER:
            return container.get("state") or {}
    return None


def _progress(pod: Mapping[str, Any] | None, ready: int = 0) -> dict[str, Any]:
    """Running only once the action's container runs; until then, what its Pod waits for."""
    if pod is None and ready:
        return {"phase": RUNNING, "reason": "Running", "message": "the action is running"}
    if pod is None:
        return {"phase": PENDING, "reason": "PodPending", "message": "waiting for the job's pod"}
    state = _action_state(pod)
    if state is not None:
        if "running" in state or "terminated" in state:
            return {"phase": RUNNING, "reason": "Running", "message": "the action is running"}
        waiting = state.get("waiting") or {}
        if waiting.get("reason"):
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return {"phase": PENDING, "reason": waiting["reason"], "message": f"{waiting['reason']}{detail}"}
    pod_phase = (pod.get("status") or {}).get("phase") or "Pending"
    return {"phase": PENDING, "reason": "PodPending", "message": f"the job's pod is {pod_phase.lower()}"}


def parse_termination_message(text: str) -> dict[str, Any]:
    """The action's JSON summary (`message`, `outputs`), or, when it wrote none, the log tail.

    With `terminationMessagePolicy: FallbackToLogsOnError` the kubelet puts the end of the log in the
    message when the action failed without writing one; its last line usually says why.
    """
    text = text.strip()
    if not text:
        return {}
    try:
        summary = json.loads(text)
    except ValueError:
        summary = None
    if isinstance(summary, dict):
        report: dict[str, Any] = {}
        if isinstance(summary.get("message"), str):
            report["message"] = summary["message"]
        outputs = _outputs(summary.get("outputs"))
        if outputs is not None:
            report["outputs"] = outputs
        return report
    tail = log_tail(text)
    return {"message": tail.splitlines()[-1], "logTail": tail}


def log_tail(text: str) -> str:
    """The last lines of a log, bounded in lines and characters for keeping in a status."""
    lines = [line for line in text.strip().splitlines() if line.strip()][-LOG_TAIL_LINES:]
    return "\n".join(lines)[-LOG_TAIL_CHARS:]


def _outputs(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    paths = [path for path in raw.get("paths") or [] if isinstance(path, str)][:5]
    return {"count": _count(raw.get("count")), "bytes": _count(raw.get("bytes")), "paths": paths}


def _count(value: Any) -> int:
    """A count from an action's own report: whatever it wrote, a non-negative whole number."""
    try:
        return max(int(value), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def newest(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(pods, key=lambda pod: pod["metadata"].get("creationTimestamp", ""), default=None)


def has_terminated(pod: Mapping[str, Any] | None) -> bool:
    """Whether the Pod is over: phase Succeeded or Failed, every container terminated (the Pod
    lifecycle doc, "Pod phase")."""
    return pod is not None and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _terminated_state(pod: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if pod is None:
        return None
    terminated = (_action_state(pod) or {}).get("terminated")
    return dict(terminated) if terminated else None


def waiting(reason: str, message: str) -> dict[str, Any]:
    return {"phase": PENDING, "reason": reason, "message": message}


def cancelled(message: str) -> dict[str, Any]:
    return {**failed("Cancelled", message), "phase": CANCELLED}


def failed(reason: str, message: str) -> dict[str, Any]:
    return {
        "phase": FAILED,
        "reason": reason,
        "message": message,
        "completionTime": timestamps.render(timestamps.now()),
    }


SUCCEEDED_CONDITION = "Succeeded"


def with_condition(
    previous: Mapping[str, Any], updated: dict[str, Any], generation: int | None, now: str
) -> dict[str, Any]:
    """`updated` with its `Succeeded` condition: Unknown until the run ends, then True or False (the
    convention for run-to-completion objects, as Tekton's TaskRun and Knative use it), and the
    `observedGeneration` it was written for."""
    phase = updated.get("phase")
    state = {SUCCEEDED: conditions.TRUE, FAILED: conditions.FALSE, CANCELLED: conditions.FALSE}.get(
        phase or "", conditions.UNKNOWN
    )
    reason, message = updated.get("reason") or phase or "Pending", updated.get("message") or ""
    found = conditions.with_condition(
        previous.get("conditions"), SUCCEEDED_CONDITION, state, reason, message, generation, now
    )
    observed = {"observedGeneration": generation} if generation is not None else {}
    return {**updated, **observed, "conditions": found}
