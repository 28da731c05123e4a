"""Runs queued under an Action's concurrency limit, on both clusters, and the slot bookkeeping."""

import threading
from pathlib import Path
from typing import Any

from kubernetes import watch

from autoscene import API_VERSION, kube, labels, queueing, status
from autoscene.sandbox.session import wait_for

from .conftest import RunningSandbox


def run(name: str, created: str, phase: str | None = None, job: bool = False) -> dict[str, Any]:
    current: dict[str, Any] = {"phase": phase} if phase else {}
    if job:
        current["jobName"] = name
    return {
        "metadata": {"name": name, "namespace": "lab", "creationTimestamp": created},
        "spec": {"action": "slow"},
        "status": current,
    }


def test_slots_are_taken_in_creation_order_and_passed_on() -> None:
    slots = queueing.Slots(lambda namespace, action: [])
    first, second, third = (run(name, f"2026-01-01T00:00:0{i}Z") for i, name in enumerate("abc"))
    assert slots.acquire(first, 1) is None
    assert slots.acquire(third, 1) == 1
    assert slots.acquire(second, 1) == 1  # older: ahead of the third
    assert slots.release("lab", "slow", "a") == "b"
    assert slots.acquire(third, 1) == 2  # the second goes first
    assert slots.acquire(second, 1) is None
    assert slots.release("lab", "slow", "b") == "c"
    assert slots.acquire(third, 1) is None and slots.holding("lab", "slow") == 1


def test_slots_are_counted_from_the_runs_the_api_shows() -> None:
    runs = [
        run("done", "2026-01-01T00:00:01Z", status.SUCCEEDED, job=True),
        run("busy", "2026-01-01T00:00:02Z", status.RUNNING, job=True),
        run("waiting", "2026-01-01T00:00:03Z", status.QUEUED),
    ]
    slots = queueing.Slots(lambda namespace, action: runs)
    assert slots.acquire(run("new", "2026-01-01T00:00:04Z"), 2) == 2  # behind "waiting"
    assert slots.acquire(runs[2], 2) is None
    runs[1]["status"]["phase"] = status.SUCCEEDED  # finished while nobody looked
    slots.recount("lab", "slow")
    assert slots.holding("lab", "slow") == 0


def test_an_actions_runs_never_exceed_its_concurrency(cluster: RunningSandbox, tmp_path: Path) -> None:
    namespace, limit, files = cluster.namespace, 2, 5
    action = {
        "apiVersion": API_VERSION,
        "kind": "Action",
        "metadata": {"name": "slow", "namespace": namespace},
        "spec": {
            "image": "busybox:1.36.1",
            "command": ["sh", "-c", "sleep 1"],
            "concurrency": limit,
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        },
    }
    trigger = {
        "apiVersion": API_VERSION,
        "kind": "Trigger",
        "metadata": {"name": "on-bin", "namespace": namespace},
        "spec": {"action": "slow", "fileGlob": "*.bin"},
    }
    assert kube.create_custom("actions", action) and kube.create_custom("triggers", trigger)
    most, active, stop = [0], set(), threading.Event()

    def count_running_jobs() -> None:
        while not stop.is_set():
            for event in watch.Watch().stream(
                kube.batch().list_namespaced_job, namespace, label_selector=labels.RUN_JOBS, timeout_seconds=2
            ):
                job = event["object"]
                finished = any(c.status == "True" for c in job.status.conditions or [])
                if event["type"] != "DELETED" and not finished:
                    active.add(job.metadata.name)
                else:
                    active.discard(job.metadata.name)
                most[0] = max(most[0], len(active))

    watcher = threading.Thread(target=count_running_jobs, daemon=True)
    watcher.start()
    sources = []
    for index in range(files):
        source = tmp_path / f"{index}.bin"
        source.write_bytes(bytes([index]))
        sources.append(source)
    cluster.upload("recordings", *sources)
    queued_seen = wait_for(
        lambda: (
            any((inv.get("status") or {}).get("phase") == status.QUEUED for inv in cluster.invocations())
            or None
        ),
        60,
        "a queued run",
    )
    assert queued_seen
    done = [cluster.run_of(f"{index}.bin", timeout=120) for index in range(files)]
    stop.set()
    assert [run["status"]["phase"] for run in done] == [status.SUCCEEDED] * files
    assert 0 < most[0] <= limit, most[0]
    # Started in the order they were created (timestamps have second precision: compare across seconds).
    for earlier in done:
        for later in done:
            if earlier["metadata"]["creationTimestamp"] < later["metadata"]["creationTimestamp"]:
                assert earlier["status"]["startTime"] <= later["status"]["startTime"]
