"""The cells `kubectl get` shows for Pods, Jobs and Events, by the rules of kube-apiserver's printers
(pkg/printers/internalversion/printers.go: printPod, printJob, printEvent). The common cases are also
compared with the real server's answers in tests/test_conformance.py."""

from datetime import UTC, datetime
from typing import Any

from autoscene.sandbox import apiserver_printers as printers

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def pod(*statuses: dict[str, Any], init: tuple[dict[str, Any], ...] = (), **extra: Any) -> dict[str, Any]:
    containers = [{"name": f"c{index}"} for index in range(len(statuses))]
    spec = {"containers": containers, "initContainers": [{"name": f"i{n}"} for n in range(len(init))]}
    status = {"phase": "Running", "containerStatuses": list(statuses), "initContainerStatuses": list(init)}
    return {"metadata": extra.pop("metadata", {}), "spec": spec, "status": {**status, **extra}}


RUNNING = {"ready": True, "state": {"running": {}}, "restartCount": 0}


def test_a_pods_status_is_what_its_containers_say_else_its_phase() -> None:
    assert printers.pod_status(pod(RUNNING), NOW) == "Running"
    backing_off = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 3}
    assert printers.pod_status(pod(RUNNING, backing_off), NOW) == "CrashLoopBackOff"
    killed = {"state": {"terminated": {"exitCode": 137, "signal": 9}}}
    assert printers.pod_status(pod(killed), NOW) == "Signal:9"
    assert printers.pod_status(pod({"state": {"terminated": {"exitCode": 2}}}), NOW) == "ExitCode:2"
    # A container still running beside one that completed: Running when the Pod is Ready, else NotReady.
    completed = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    ready = [{"type": "Ready", "status": "True"}]
    assert printers.pod_status(pod(RUNNING, completed, conditions=ready), NOW) == "Running"
    assert printers.pod_status(pod(RUNNING, completed), NOW) == "NotReady"
    deleted = {"deletionTimestamp": "2026-05-01T11:59:00Z"}
    assert printers.pod_status(pod(RUNNING, metadata=deleted), NOW) == "Terminating"
    # A Pod that ended keeps saying how while it is deleted.
    assert printers.pod_status(pod(completed, metadata=deleted, phase="Succeeded"), NOW) == "Completed"


def test_an_init_container_that_has_not_ended_well_names_the_status() -> None:
    done = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    waiting = {"state": {"waiting": {"reason": "PodInitializing"}}}
    assert printers.pod_status(pod(waiting, init=(done, waiting)), NOW) == "Init:1/2"
    failed = {"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
    assert printers.pod_status(pod(waiting, init=(failed,)), NOW) == "Init:Error"
    pulling = {"state": {"waiting": {"reason": "ImagePullBackOff"}}}
    assert printers.pod_status(pod(waiting, init=(pulling,)), NOW) == "Init:ImagePullBackOff"


def test_ready_counts_running_ready_containers_and_restarts_say_when_the_last_was() -> None:
    restarted = {
        "ready": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "restartCount": 2,
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-05-01T11:55:00Z"}},
    }
    assert printers.pod_ready(pod(RUNNING, restarted), NOW) == "1/2"
    assert printers.pod_restarts(pod(RUNNING, restarted), NOW) == "2 (5m ago)"
    assert printers.pod_restarts(pod(RUNNING), NOW) == "0"


def test_a_jobs_status_completions_and_duration() -> None:
    def job(*conditions: str, **status: Any) -> dict[str, Any]:
        held = [{"type": kind, "status": "True"} for kind in conditions]
        return {"metadata": {}, "spec": {"completions": 1}, "status": {"conditions": held, **status}}

    assert printers.job_status(job(), NOW) == "Running"
    assert printers.job_status(job("Suspended"), NOW) == "Suspended"
    assert printers.job_status(job("FailureTarget", "Failed"), NOW) == "Failed"
    assert printers.job_status(job("SuccessCriteriaMet", "Complete"), NOW) == "Complete"
    assert printers.job_completions(job(succeeded=1), NOW) == "1/1"
    work_queue = {"metadata": {}, "spec": {"parallelism": 3}, "status": {"succeeded": 2}}
    assert printers.job_completions(work_queue, NOW) == "2/1 of 3"
    ran = job(startTime="2026-05-01T11:50:00Z", completionTime="2026-05-01T11:52:05Z")
    assert printers.job_duration(ran, NOW) == "2m5s"
    assert printers.job_duration(job(startTime="2026-05-01T11:59:30Z"), NOW) == "30s"  # still running
    assert printers.job_duration(job(), NOW) == ""


def test_an_events_object_and_last_seen() -> None:
    event = {
        "involvedObject": {"kind": "Invocation", "name": "run-1"},
        "firstTimestamp": "2026-05-01T11:59:00Z",
    }
    assert printers.event_object(event, NOW) == "invocation/run-1"
    assert printers.event_last_seen(event, NOW) == "60s"
    assert printers.event_last_seen({}, NOW) == "<unknown>"
