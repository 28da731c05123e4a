"""The cells `kubectl get` shows for built-in kinds that no JSONPath gives: a Pod's READY, STATUS and
RESTARTS, a Job's STATUS, COMPLETIONS and DURATION, an Event's OBJECT. As kube-apiserver prints them
(pkg/printers/internalversion/printers.go: printPod, printJob, printEvent); pure functions of the object
and the time it is printed at.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .. import conditions, timestamps

Object = Mapping[str, Any]


def human_duration(seconds: float) -> str:
    """The API server's (and kubectl's) short age: 42s, 3m7s, 5h, 12d, 3y
    (k8s.io/apimachinery/pkg/util/duration.HumanDuration)."""
    whole = int(seconds)
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes, hours = whole // 60, whole // 3600
    if minutes < 10:
        return f"{minutes}m{whole % 60}s" if whole % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // (24 * 365), (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // (24 * 365)}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the API, or None when absent or malformed."""
    try:
        return timestamps.parse(str(value)) if value else None
    except ValueError:
        return None


# Pods ------------------------------------------------------------------------------------------------


FINISHED_POD_PHASES = ("Succeeded", "Failed")


def pod_ready(pod: Object, now: datetime) -> str:
    """READY: the containers ready and running, of all the Pod's containers."""
    ready = sum(1 for status in _statuses(pod, "containerStatuses") if _ready_and_running(status))
    return f"{ready}/{len((pod.get('spec') or {}).get('containers') or [])}"


def pod_status(pod: Object, now: datetime) -> str:
    """STATUS: the phase, unless an init container or a container says more (its waiting or terminated
    reason: Completed, Error, CrashLoopBackOff, Init:0/1…), or the Pod is being deleted before it ended."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or ""
    inits = (pod.get("spec") or {}).get("initContainers") or []
    initializing = False
    for index, container in enumerate(_statuses(pod, "initContainerStatuses")):
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode") == 0:
            continue
        if terminated is not None:
            reason = "Init:" + _ended_reason(terminated)
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(inits)}"
        initializing = True
        break
    if not initializing:
        running = False
        for container in reversed(_statuses(pod, "containerStatuses")):
            state = container.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _ended_reason(terminated)
            elif _ready_and_running(container):
                running = True
        if reason == "Completed" and running:
            reason = "Running" if _condition(status, "Ready") else "NotReady"
    deleting = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    if deleting and status.get("phase") not in FINISHED_POD_PHASES:
        reason = "Terminating"  # a Pod that already ended keeps saying how
    return str(reason)


def pod_restarts(pod: Object, now: datetime) -> str:
    """RESTARTS: the containers' restarts, with how long ago the last one was ("2 (5m ago)")."""
    statuses = _statuses(pod, "initContainerStatuses") + _statuses(pod, "containerStatuses")
    restarts = sum(int(status.get("restartCount") or 0) for status in statuses)
    ended = [
        parse_time(((status.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        for status in statuses
        if status.get("restartCount")
    ]
    last = max((moment for moment in ended if moment is not None), default=None)
    if not restarts or last is None:
        return str(restarts)
    return f"{restarts} ({human_duration((now - last).total_seconds())} ago)"


def _statuses(pod: Object, key: str) -> list[Mapping[str, Any]]:
    return list((pod.get("status") or {}).get(key) or [])


def _ready_and_running(status: Mapping[str, Any]) -> bool:
    return bool(status.get("ready")) and (status.get("state") or {}).get("running") is not None


def _ended_reason(terminated: Mapping[str, Any]) -> str:
    if terminated.get("reason"):
        return str(terminated["reason"])
    if terminated.get("signal"):
        return f"Signal:{terminated['signal']}"
    return f"ExitCode:{terminated.get('exitCode', 0)}"


def _condition(status: Mapping[str, Any], kind: str) -> bool:
    return (conditions.find(status.get("conditions"), kind) or {}).get("status") == "True"


# Jobs ------------------------------------------------------------------------------------------------

# The first condition that holds names a Job's STATUS; a Job being deleted shows Terminating unless it
# already ended.
_JOB_ENDS = ("Complete", "Failed")
_JOB_STATES = ("Suspended", "FailureTarget", "SuccessCriteriaMet")


def job_status(job: Object, now: datetime) -> str:
    """STATUS: Complete, Failed, Terminating, Suspended, FailureTarget, SuccessCriteriaMet or Running."""
    status = job.get("status") or {}
    for kind in _JOB_ENDS:
        if _condition(status, kind):
            return kind
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return next((kind for kind in _JOB_STATES if _condition(status, kind)), "Running")


def job_completions(job: Object, now: datetime) -> str:
    """COMPLETIONS: succeeded Pods of those wanted ("1/1"; "0/1 of 3" for a work queue in parallel)."""
    spec, succeeded = job.get("spec") or {}, int((job.get("status") or {}).get("succeeded") or 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration(job: Object, now: datetime) -> str:
    """DURATION: from its start to its completion, or to now while it runs; empty before it starts."""
    status = job.get("status") or {}
    started = parse_time(status.get("startTime"))
    if started is None:
        return ""
    ended = parse_time(status.get("completionTime")) or now
    return human_duration((ended - started).total_seconds())


# Events ----------------------------------------------------------------------------------------------


def event_last_seen(event: Object, now: datetime) -> str:
    """LAST SEEN: since its lastTimestamp, else its firstTimestamp, else its eventTime; <unknown>."""
    for key in ("lastTimestamp", "firstTimestamp", "eventTime"):
        if (moment := parse_time(event.get(key))) is not None:
            return human_duration((now - moment).total_seconds())
    return "<unknown>"


def event_object(event: Object, now: datetime) -> str:
    """OBJECT: the kind, lowercased, and name of the object the Event is about ("pod/run-x")."""
    involved = event.get("involvedObject") or {}
    return f"{str(involved.get('kind') or '').lower()}/{involved.get('name') or ''}"
