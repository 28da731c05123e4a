"""A run's log kept on its Record's volume, so that it outlives the Job: end to end on both servers."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from autoscene import GROUP, VERSION, kube, logkeeping
from autoscene.sandbox.session import wait_for

from .conftest import ApiNamespace, RunningSandbox
from .test_end_to_end import create_invocation


def kept_log(cluster: RunningSandbox, invocation: str) -> Path:
    record = kube.get_custom("records", cluster.namespace, "recordings")
    assert record is not None
    claim = record["status"]["claimName"]
    return cluster.sandbox.volumes / cluster.namespace / claim / logkeeping.log_path(invocation)


def test_a_runs_log_is_kept_after_its_job_is_deleted(cluster: RunningSandbox, tmp_path: Path) -> None:
    """The whole log of a short run; the last MiB, whole lines, of a long one; both still there once
    the Jobs (and their Pods) are gone."""
    talk = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Action",
        "metadata": {"name": "talk"},
        "spec": {
            "image": "busybox:1.36.1",
            "command": ["sh", "-c", 'seq 1 "{{parameter.lines}}" | sed "s/^/line /"'],
            "parameters": [{"name": "lines", "required": True}],
        },
    }
    cluster.apply([talk])
    seed = tmp_path / "seed.txt"
    seed.write_text("x\n")
    cluster.upload("recordings", seed)
    create_invocation(cluster, "short-talk", action="talk", file="seed.txt", parameters={"lines": "3000"})
    create_invocation(cluster, "long-talk", action="talk", file="seed.txt", parameters={"lines": "150000"})
    for name in ("short-talk", "long-talk"):
        assert cluster.finished(name, timeout=90)["status"]["phase"] == "Succeeded"

    short = wait_for(lambda: kept_log(cluster, "short-talk").is_file() or None, 30, "the short log kept")
    assert short
    expected = "".join(f"line {number}\n" for number in range(1, 3001))
    assert kept_log(cluster, "short-talk").read_text() == expected

    wait_for(lambda: kept_log(cluster, "long-talk").is_file() or None, 30, "the long log kept")
    long_text = kept_log(cluster, "long-talk").read_bytes()
    whole = "".join(f"line {number}\n" for number in range(1, 150_001)).encode()
    note, _, rest = long_text.partition(b"\n")
    assert whole.endswith(rest) and rest.startswith(b"line ")
    assert logkeeping.KEPT_BYTES - 20 < len(rest) <= logkeeping.KEPT_BYTES
    assert note == f"[the first {len(whole) - len(rest)} bytes of the log were not kept]".encode()

    for name in ("short-talk", "long-talk"):
        kube.batch().delete_namespaced_job(name, cluster.namespace, propagation_policy="Foreground")
    wait_for(
        lambda: (
            not kube.batch()
            .list_namespaced_job(cluster.namespace, label_selector="autoscene.io/action=talk")
            .items
            or None
        ),
        60,
        "the jobs to be gone",
    )
    assert kept_log(cluster, "short-talk").read_text() == expected

    # As a user reads it: the Pods are gone, the CLI prints the kept log (through the API on a cluster).
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("autoscene")), "logs", "short-talk", "-n", cluster.namespace],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": str(cluster.sandbox.kubeconfig)},
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "kept on the Record's volume" in cli.stdout
    assert cli.stdout.endswith(expected)


def test_a_running_pods_log_is_read_and_followed_as_it_is_written(api_namespace: ApiNamespace) -> None:
    """`kubectl logs` shows what a running container wrote so far, and `-f` streams the rest until the
    container ends, as from a node's kubelet (Kubernetes docs, "Logging Architecture")."""
    namespace, core = api_namespace.namespace, kube.core()
    container = {
        "name": "main",
        "image": "busybox:1.36.1",
        "command": ["sh", "-c", "echo first; sleep 5; echo second"],
    }
    pod = {"metadata": {"name": "talker"}, "spec": {"restartPolicy": "Never", "containers": [container]}}
    core.create_namespaced_pod(namespace, pod)

    def first_line_while_running() -> str | None:
        phase = core.read_namespaced_pod("talker", namespace).status.phase
        text = core.read_namespaced_pod_log("talker", namespace) if phase == "Running" else ""
        return text if phase == "Running" and text else None

    assert wait_for(first_line_while_running, 60, "the first line while the pod runs") == "first\n"
    followed = kube.get_raw(f"/api/v1/namespaces/{namespace}/pods/talker/log", follow="true")
    try:
        assert followed.data.decode() == "first\nsecond\n"  # read until the container ended
    finally:
        followed.release_conn()


def test_a_pods_log_is_one_containers_and_previous_reads_the_instance_before_a_restart(
    api_namespace: ApiNamespace,
) -> None:
    """A log request reads one container: the Pod's only one, else the one named, else a 400 naming
    them (kube-apiserver, pkg/registry/core/pod/strategy.go); `previous` reads what the last instance
    wrote before a restart, a 400 when there was none (the kubelet's answer). Kubernetes docs,
    "kubectl logs": `-c`, `-p`."""
    namespace, core = api_namespace.namespace, kube.core()

    def container(name: str, script: str) -> dict[str, Any]:
        return {"name": name, "image": "busybox:1.36.1", "command": ["sh", "-c", script]}

    pair = {
        "metadata": {"name": "pair"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container("one", "echo from one"), container("two", "echo from two")],
        },
    }
    # Restarted after each failure: every instance says its own process id.
    flaky = {
        "metadata": {"name": "flaky"},
        "spec": {"restartPolicy": "OnFailure", "containers": [container("main", "echo from $$; exit 1")]},
    }
    core.create_namespaced_pod(namespace, pair)
    core.create_namespaced_pod(namespace, flaky)

    def refused(name: str, **options: Any) -> str:
        with pytest.raises(ApiException) as error:
            core.read_namespaced_pod_log(name, namespace, **options)
        assert error.value.status == 400, error.value
        return str(json.loads(error.value.body)["message"])

    assert refused("pair") == "a container name must be specified for pod pair, choose one of: [one two]"
    assert refused("pair", container="three") == "container three is not valid for pod pair"

    def line_of(name: str) -> str | None:
        try:
            return core.read_namespaced_pod_log("pair", namespace, container=name) or None
        except ApiException as error:  # 400 while the container waits to start, on a node
            assert error.status == 400, error
            return None

    for name in ("one", "two"):
        said = wait_for(
            functools.partial(line_of, name),
            60,
            f"{name}'s line",
            explain=lambda: str(core.read_namespaced_pod("pair", namespace).status),
        )
        assert said == f"from {name}\n"
    assert refused("pair", container="one", previous=True) == (
        'previous terminated container "one" in pod "pair" not found'
    )

    def restarted_and_writing() -> tuple[str, str] | None:
        statuses = core.read_namespaced_pod("flaky", namespace).status.container_statuses or []
        if not any(status.restart_count >= 1 for status in statuses):
            return None
        try:
            last = core.read_namespaced_pod_log("flaky", namespace, previous=True)
        except ApiException:
            return None
        current = core.read_namespaced_pod_log("flaky", namespace)
        return (last, current) if last and current else None

    last, current = wait_for(
        restarted_and_writing,
        90,
        "the container restarted and writing again",
        explain=lambda: str(core.read_namespaced_pod("flaky", namespace).status),
    )
    # One instance's line each, not the lines of every instance so far.
    assert last.startswith("from ") and len(last.splitlines()) == 1, last
    assert current.startswith("from ") and len(current.splitlines()) == 1, current


def test_following_a_log_ends_with_the_container_instance(api_namespace: ApiNamespace) -> None:
    """`kubectl logs -f` follows one instance of the container, as the kubelet streams it: when the
    container exits and is restarted, the stream ends with that instance's last line."""
    namespace, core = api_namespace.namespace, kube.core()
    script = "echo start $$; sleep 2; echo end $$; exit 1"
    container = {"name": "main", "image": "busybox:1.36.1", "command": ["sh", "-c", script]}
    pod = {"metadata": {"name": "looping"}, "spec": {"restartPolicy": "OnFailure", "containers": [container]}}
    core.create_namespaced_pod(namespace, pod)

    def first_instance_running() -> str | None:
        found = core.read_namespaced_pod("looping", namespace).status
        if found.phase != "Running" or any(status.restart_count for status in found.container_statuses or []):
            return None
        try:
            return core.read_namespaced_pod_log("looping", namespace) or None
        except ApiException:
            return None

    started = wait_for(first_instance_running, 60, "the first instance's first line")
    followed = kube.get_raw(f"/api/v1/namespaces/{namespace}/pods/looping/log", follow="true")
    try:
        text = followed.data.decode()
    finally:
        followed.release_conn()
    pid = started.split()[1]
    assert text == f"start {pid}\nend {pid}\n", text


def test_the_log_of_a_container_waiting_to_start_is_a_400_saying_why(api_namespace: ApiNamespace) -> None:
    """A container that never started has no log: the kubelet refuses the request, saying why it waits
    (validateContainerLogStatus in pkg/kubelet/kubelet_pods.go), and the API server passes that on."""
    namespace, core = api_namespace.namespace, kube.core()
    unpullable = {
        "metadata": {"name": "unpullable"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "example.com/no-such-image:1", "command": ["true"]}],
        },
    }
    core.create_namespaced_pod(namespace, unpullable)

    def waiting() -> Any:
        found = core.read_namespaced_pod("unpullable", namespace)
        statuses = found.status.container_statuses or []
        return statuses[0].state.waiting if statuses and statuses[0].state.waiting else None

    assert wait_for(waiting, 60, "the container to wait for its image").reason in (
        "ErrImagePull",
        "ImagePullBackOff",
    )
    with pytest.raises(ApiException) as error:
        core.read_namespaced_pod_log("unpullable", namespace)
    assert error.value.status == 400, error.value
    assert json.loads(error.value.body)["message"] in (
        'container "main" in pod "unpullable" is waiting to start: image can\'t be pulled',
        'container "main" in pod "unpullable" is waiting to start: trying and failing to pull image',
    )
