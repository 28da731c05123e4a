"""Two replicas are safe: only the one holding the Lease acts; the other takes over when it goes."""

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoscene import kube, labels
from autoscene.leader import LeaderElector, held_spec, is_free_for
from autoscene.sample_video import make_sample_video
from autoscene.sandbox.demo import sample_manifests
from autoscene.sandbox.session import Sandbox, wait_for

from .conftest import RunningSandbox

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_a_lease_is_free_when_unheld_own_or_lapsed_by_our_own_clock() -> None:
    held = held_spec(None, "a", NOW, 15)
    assert held["holderIdentity"] == "a" and held["leaseTransitions"] == 1
    assert is_free_for(None, "b", unchanged_for=0)
    assert is_free_for({"holderIdentity": None}, "b", unchanged_for=0)
    assert is_free_for(held, "a", unchanged_for=100)
    # Another holder lapses only when its record stayed the same for the lease's duration, as we saw it.
    assert not is_free_for(held, "b", unchanged_for=14)
    assert is_free_for(held, "b", unchanged_for=16)
    renewed = held_spec(held, "a", NOW + timedelta(seconds=10), 15)
    assert renewed["acquireTime"] == held["acquireTime"] and renewed["leaseTransitions"] == 1
    assert renewed["renewTime"] != held["renewTime"]
    assert held_spec(renewed, "b", NOW + timedelta(seconds=30), 15)["leaseTransitions"] == 2


def test_releasing_the_lease_gives_up_when_the_api_server_does_not_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stopping replica must not hang on a server that accepted its connection and never answers
    (its etcd gone, say): the release is bounded and said, and the Lease lapses instead."""
    silent = socket.create_server(("127.0.0.1", 0))
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{silent.getsockname()[1]}"
    elector = LeaderElector(client.ApiClient(configuration), "default", "lease", "me", 3, 1)
    released = threading.Thread(target=elector.release, daemon=True)
    try:
        released.start()
        released.join(timeout=30)  # not a timing check: before the fix it never returned
        assert not released.is_alive()
        assert "could not release the Lease" in caplog.text
    finally:
        silent.close()


@pytest.fixture
def bare_sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    """A sandbox whose operators are separate processes, as replicas of a Deployment would be."""
    with Sandbox(tmp_path / "sandbox", with_operator=False) as running:
        running.apply(list(sample_manifests()))
        yield RunningSandbox(running)


def start_replica(sandbox: RunningSandbox, name: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    executable = Path(sys.executable).with_name("autoscene")
    env = {**os.environ, "KUBECONFIG": str(sandbox.sandbox.kubeconfig), "POD_NAME": name}
    command = [str(executable), "operator", "-A", "--lease-seconds", "2", "--renew-seconds", "0.3"]
    output = log.open("wb") if log else subprocess.DEVNULL
    return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def lease_holder() -> str | None:
    try:
        lease = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease(
            "autoscene-operator", "default"
        )
    except ApiException:
        return None
    return (kube.sanitized(lease).get("spec") or {}).get("holderIdentity")


def record_ready(namespace: str) -> str | None:
    return ((kube.get_custom("records", namespace, "recordings") or {}).get("status") or {}).get("claimName")


def test_a_second_replica_does_not_double_handle_and_takes_over(
    bare_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    replicas = {name: start_replica(bare_sandbox, name) for name in ("replica-a", "replica-b")}
    try:
        leader = wait_for(lease_holder, 30, "a replica to take the Lease")
        standby = next(name for name in replicas if name != leader)
        wait_for(lambda: record_ready(bare_sandbox.namespace), 30, "the leader to prepare the record")
        first = make_sample_video(tmp_path / "first.mp4", width=64, height=48, frames=6)
        bare_sandbox.upload("recordings", first)
        assert bare_sandbox.run_of(first.name)["status"]["phase"] == "Succeeded"
        jobs = kube.batch().list_namespaced_job(bare_sandbox.namespace, label_selector=labels.RUN_JOBS).items
        assert len(bare_sandbox.invocations()) == 1 and len(jobs) == 1
        assert lease_holder() == leader
        # The leader dies without a word; the standby takes the Lease once it lapses, and carries on.
        replicas[leader].send_signal(signal.SIGKILL)
        replicas[leader].wait(timeout=10)
        wait_for(lambda: lease_holder() == standby or None, 30, "the standby to take the Lease")
        second = make_sample_video(tmp_path / "second.mp4", width=64, height=48, frames=6, seed=3)
        bare_sandbox.upload("recordings", second)
        assert bare_sandbox.run_of(second.name)["status"]["phase"] == "Succeeded"
        assert sorted(inv["spec"]["file"] for inv in bare_sandbox.invocations()) == [
            "first.mp4",
            "second.mp4",
        ]
    finally:
        for process in replicas.values():
            if process.poll() is None:
                process.terminate()
        for process in replicas.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def steal_lease(leases: client.CoordinationV1Api) -> bool | None:
    """Another holder takes the Lease; None when the replica renewed it between the read and the
    write (409 Conflict, as for any compare-and-swap), to try again."""
    stolen = kube.sanitized(leases.read_namespaced_lease("autoscene-operator", "default"))
    stolen["spec"].update(
        holderIdentity="thief", renewTime=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    try:
        leases.replace_namespaced_lease("autoscene-operator", "default", stolen)
    except ApiException as error:
        if error.status == 409:
            return None
        raise
    return True


def test_a_replica_that_loses_the_lead_stops_acting_then_leads_again(
    bare_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    log = tmp_path / "replica-a.log"
    replica = start_replica(bare_sandbox, "replica-a", log)
    leases = client.CoordinationV1Api(kube.api_client())
    try:
        wait_for(lambda: lease_holder() == "replica-a" or None, 30, "the replica to take the Lease")
        wait_for(lambda: record_ready(bare_sandbox.namespace), 30, "the leader to prepare the record")
        # Another holder takes the Lease (as after an API outage longer than the lease): the replica's
        # renewals fail, it stops acting, and it campaigns again rather than exit.
        wait_for(lambda: steal_lease(leases), 30, "the Lease to be taken from the replica")
        wait_for(lambda: "stopped acting after losing the lead" in log.read_text() or None, 30, "the loss")
        wait_for(lambda: lease_holder() == "replica-a" or None, 30, "the replica to lead again")
        assert replica.poll() is None, "the replica exited instead of campaigning again"
        clip = make_sample_video(tmp_path / "after.mp4", width=64, height=48, frames=6)
        bare_sandbox.upload("recordings", clip)
        assert bare_sandbox.run_of(clip.name)["status"]["phase"] == "Succeeded"
        assert replica.poll() is None
    finally:
        replica.terminate()
        try:
            replica.wait(timeout=15)
        except subprocess.TimeoutExpired:
            replica.kill()
