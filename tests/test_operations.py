"""Operating the operator: clean-up that keeps the history, retention, metrics and Events."""

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from autoscene import config, kube, labels, metrics
from autoscene.sample_video import make_sample_video
from autoscene.sandbox.demo import noop_manifests
from autoscene.sandbox.session import wait_for

from .conftest import RunningSandbox


def small_clip(folder: Path, name: str, seed: int = 7) -> Path:
    return make_sample_video(folder / name, width=64, height=48, frames=6, seed=seed)


def eventually(condition, timeout: float = 30, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
def short_job_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_installed", config.OperatorConfig(job_ttl_seconds=1))


def test_finished_jobs_are_deleted_and_the_invocation_keeps_the_history(
    short_job_ttl: None, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    clip = small_clip(tmp_path, "short.mp4")
    sandbox.upload("recordings", clip)
    run = sandbox.run_of(clip.name)
    name = run["metadata"]["name"]
    core, batch = kube.core(), kube.batch()
    eventually(
        lambda: not batch.list_namespaced_job(sandbox.namespace, label_selector=labels.RUN_JOBS).items,
        what="the job to be deleted",
    )
    eventually(
        lambda: not core.list_namespaced_pod(sandbox.namespace, label_selector=f"job-name={name}").items,
        what="the pods to be deleted",
    )
    kept = sandbox.invocation(name)
    assert kept is not None
    status = kept["status"]
    assert status["phase"] == "Succeeded" and status["exitCode"] == 0
    assert status["startTime"] and status["completionTime"] and status["duration"]
    assert status["outputs"]["count"] > 0 and "extracted 6 frames" in status["message"]
    assert "extracted 6 frames" in status["logTail"]  # the end of the log, read before the pod went
    assert len(status["logTail"]) <= 2048


def test_a_failed_runs_log_tail_outlives_its_pod(
    short_job_ttl: None, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"garbage" * 100)
    sandbox.upload("recordings", broken)
    name = sandbox.run_of(broken.name)["metadata"]["name"]
    eventually(
        lambda: not kube.batch().list_namespaced_job(sandbox.namespace, label_selector=labels.RUN_JOBS).items,
        what="the job to go",
    )
    kept = sandbox.invocation(name)
    assert kept is not None and kept["status"]["phase"] == "Failed"
    assert "broken.mp4" in kept["status"]["logTail"]


def test_retention_keeps_the_last_runs_of_a_trigger(sandbox: RunningSandbox, tmp_path: Path) -> None:
    trigger = kube.get_custom("triggers", sandbox.namespace, "auto-extract-images")
    assert trigger is not None
    kube.custom().patch_namespaced_custom_object(
        "autoscene.io",
        "v1alpha1",
        sandbox.namespace,
        "triggers",
        "auto-extract-images",
        {"spec": {"retention": {"keepLast": 2}}},
    )
    clips = [small_clip(tmp_path, f"clip{n}.mp4", seed=n) for n in range(4)]
    for clip in clips:
        sandbox.upload("recordings", clip)
        sandbox.run_of(clip.name)

    def names() -> list[str]:
        return sorted(inv["spec"]["file"] for inv in sandbox.invocations())

    eventually(
        lambda: names() == ["clip2.mp4", "clip3.mp4"],
        what=f"the two newest runs to be all that is left: {names()}",
    )
    # A pruned run is not made again by later events of its Record.
    later = small_clip(tmp_path, "later.mp4", seed=99)
    sandbox.upload("recordings", later)
    sandbox.run_of(later.name)
    eventually(lambda: names() == ["clip3.mp4", "later.mp4"], what=f"pruning after the next run: {names()}")


def test_metrics_count_runs_and_are_served(sandbox: RunningSandbox, tmp_path: Path) -> None:
    created = sample("autoscene_invocations_created_total", {"action": "extract-images"})
    succeeded = sample(
        "autoscene_invocations_finished_total", {"action": "extract-images", "phase": "Succeeded"}
    )
    failed = sample("autoscene_invocations_finished_total", {"action": "extract-images", "phase": "Failed"})
    durations = sample("autoscene_invocation_duration_seconds_count", {"action": "extract-images"})
    latencies = sample("autoscene_dispatch_latency_seconds_count")
    good = small_clip(tmp_path, "good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    sandbox.upload("recordings", good, bad)
    sandbox.run_of(good.name)
    sandbox.run_of(bad.name)
    assert sample("autoscene_invocations_created_total", {"action": "extract-images"}) == created + 2
    assert (
        sample("autoscene_invocations_finished_total", {"action": "extract-images", "phase": "Succeeded"})
        == succeeded + 1
    )
    assert (
        sample("autoscene_invocations_finished_total", {"action": "extract-images", "phase": "Failed"})
        == failed + 1
    )
    assert (
        sample("autoscene_invocation_duration_seconds_count", {"action": "extract-images"}) == durations + 2
    )
    assert sample("autoscene_dispatch_latency_seconds_count") == latencies + 2
    eventually(
        lambda: sample("autoscene_invocations_in_flight", {"phase": "Running"}) == 0, what="no run in flight"
    )
    port = free_port()
    metrics.serve(port)
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'autoscene_invocations_created_total{action="extract-images"}' in page
    assert "autoscene_handler_errors_total" in page or "autoscene_handler_errors" in page


def test_transitions_and_errors_are_kubernetes_events(sandbox: RunningSandbox, tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    sandbox.upload("recordings", bad)
    name = sandbox.run_of(bad.name)["metadata"]["name"]

    def reasons(kind: str, object_name: str) -> set[tuple[str, str]]:
        events = kube.core().list_namespaced_event(sandbox.namespace).items
        return {
            (event.type, event.reason)
            for event in events
            if event.involved_object.kind == kind and event.involved_object.name == object_name
        }

    eventually(lambda: ("Warning", "PodFailurePolicy") in reasons("Invocation", name), what="a failure Event")
    assert ("Normal", "JobCreated") in reasons("Invocation", name)
    assert ("Normal", "TriggerFired") in reasons("Record", "recordings")
    assert ("Normal", "ClaimReady") in reasons("Record", "recordings")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_job_deleted_before_it_ends_fails_its_run(sandbox: RunningSandbox) -> None:
    sleeper = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Action",
        "metadata": {"name": "sleeper", "namespace": sandbox.namespace},
        "spec": {"image": "busybox:1.36.1", "command": ["sleep", "60"]},
    }
    kube.create_custom("actions", sleeper)
    run = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Invocation",
        "metadata": {"name": "nap", "namespace": sandbox.namespace},
        "spec": {"action": "sleeper", "record": "recordings", "file": "-"},
    }
    kube.create_custom("invocations", run)
    eventually(
        lambda: (sandbox.invocation("nap") or {}).get("status", {}).get("phase") == "Running",
        what="the run to start",
    )
    kube.batch().delete_namespaced_job("nap", sandbox.namespace, propagation_policy="Background")
    failed = sandbox.finished("nap")
    assert failed["status"]["phase"] == "Failed" and failed["status"]["reason"] == "JobLost"
    assert 'job "nap" was deleted before it finished' in failed["status"]["message"]


def test_a_manual_run_with_a_long_name_gets_a_job_within_limits(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    clip = small_clip(tmp_path, "long.mp4")
    sandbox.upload("recordings", clip)
    sandbox.run_of(clip.name)
    name = "re-extract-" + "x" * 70
    run = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Invocation",
        "metadata": {"name": name, "namespace": sandbox.namespace},
        "spec": {"action": "extract-images", "record": "recordings", "file": clip.name},
    }
    kube.create_custom("invocations", run)
    done = sandbox.finished(name)
    assert done["status"]["phase"] == "Succeeded"
    assert len(done["status"]["jobName"]) <= 52 and done["status"]["jobName"].startswith("re-extract-x")


def test_the_reconciliation_pass_repairs_a_lost_final_event(sandbox: RunningSandbox, tmp_path: Path) -> None:
    from autoscene.reconciler import reconcile_once

    clip = small_clip(tmp_path, "lost.mp4")
    sandbox.upload("recordings", clip)
    name = sandbox.run_of(clip.name)["metadata"]["name"]
    # As if the Job's last event had been lost: the Invocation still says Running.
    kube.patch_custom_status(
        "invocations",
        sandbox.namespace,
        name,
        {"phase": "Running", "reason": "Running", "completionTime": None},
    )
    reconcile_once()
    repaired = sandbox.invocation(name)
    assert repaired is not None and repaired["status"]["phase"] == "Succeeded"
    assert repaired["status"]["completionTime"]


def test_the_reconciliation_pass_is_scoped_paged_and_outlives_a_failing_object(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoscene import invocations, reconciler

    clips = [small_clip(tmp_path, f"page-{index}.mp4", seed=index) for index in range(3)]
    sandbox.upload("recordings", *clips)
    names = [sandbox.run_of(clip.name)["metadata"]["name"] for clip in clips]
    for name in names:  # as if each Job's last event had been lost
        kube.patch_custom_status(
            "invocations",
            sandbox.namespace,
            name,
            {"phase": "Running", "reason": "Running", "completionTime": None},
        )
    monkeypatch.setattr(reconciler, "PAGE_SIZE", 1)  # every object on a page of its own
    sync_with_job = invocations.sync_with_job

    def failing_for_the_first(namespace: str, job: object, name: str, uid: str) -> object:
        if name == names[0]:
            raise RuntimeError("this one cannot be read")
        return sync_with_job(namespace, job, name, uid)  # type: ignore[arg-type]

    monkeypatch.setattr(invocations, "sync_with_job", failing_for_the_first)

    def phases() -> list[str]:
        return [(sandbox.invocation(name) or {})["status"]["phase"] for name in names]

    elsewhere = reconciler.reconcile_once(["a-namespace-it-does-not-serve"])
    assert phases() == ["Running"] * 3 and elsewhere == reconciler.Pass()
    done = reconciler.reconcile_once([sandbox.namespace])
    assert phases() == ["Running", "Succeeded", "Succeeded"]
    assert (done.repaired_invocations, done.failures) == (2, 1)


def test_a_job_that_ends_before_its_start_is_written_still_ends_the_run(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start's status write is held (as a failed write retried later would be) until the Job has
    ended: the Job's last event comes first, and must not be lost, since nothing else brings the run
    to its end but the next periodic pass (switched off here)."""
    from autoscene import invocations, lifecycle, reconciler, status

    monkeypatch.setattr(reconciler, "reconcile_once", lambda *args, **kwargs: reconciler.Pass())
    write = invocations.write
    held: list[str] = []

    def late_start(invocation: Any, wanted: Any) -> Any:
        name = invocation["metadata"]["name"]
        if not callable(wanted) and (wanted or {}).get("reason") == lifecycle.JOB_CREATED and not held:
            held.append(name)
            read_job = kube.batch().read_namespaced_job
            wait_for(
                lambda: status.job_ended(kube.sanitized(read_job(name, sandbox.namespace))) or None,
                60,
                f"job {name} to end",
            )
            time.sleep(1)  # its last event handled meanwhile
        return write(invocation, wanted)

    monkeypatch.setattr(invocations, "write", late_start)
    sandbox.apply(noop_manifests("*.bin"))
    source = tmp_path / "race.bin"
    source.write_bytes(b"race")
    sandbox.upload("recordings", source)
    done = sandbox.run_of("race.bin", timeout=30)
    assert held == [done["metadata"]["name"]]
    assert done["status"]["phase"] == status.SUCCEEDED, done["status"]
