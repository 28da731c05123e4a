"""Uploads through the Kubernetes API only: an uploader Pod, tar over exec, checksums checked on arrival.

Against the embedded API server, whose exec subresource speaks the websocket channel protocol and whose
local kubelet runs the uploader's commands with its container paths mapped to the sandbox's volumes.
"""

import hashlib
import json
import os
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from kubernetes import client

from autoscene import cluster_upload, files, kube, upload
from autoscene.sample_video import make_sample_video
from autoscene.sandbox import apiserver_exec
from autoscene.sandbox.demo import sample_manifests
from autoscene.sandbox.kubelet import LocalKubelet
from autoscene.sandbox.session import Sandbox, wait_for

RECORD = "recordings"
UPLOADERS = f"{cluster_upload.ROLE_LABEL}={cluster_upload.ROLE}"


class Cluster:
    """A sandbox with the samples applied and a local kubelet for bare Pods and exec."""

    def __init__(self, sandbox: Sandbox, kubelet: LocalKubelet) -> None:
        self.sandbox = sandbox
        self.kubelet = kubelet
        self.namespace = sandbox.namespace
        self.core = client.CoreV1Api(sandbox.api)

    @property
    def claim_folder(self) -> Path:
        return self.sandbox.volumes / self.namespace / upload.record_claim(self.namespace, RECORD)

    def upload(self, planned: list[tuple[Path, str]], **options: Any) -> list[upload.UploadedFile]:
        return cluster_upload.upload_via_exec(self.namespace, RECORD, planned, lambda _: None, **options)

    def registered(self, record: str = RECORD) -> dict[str, dict[str, Any]]:
        """The Record's RecordFiles' specs, by path."""
        selector = f"autoscene.io/record={record}"
        listed = kube.list_custom(files.PLURAL, self.namespace, label_selector=selector)
        return {item["spec"]["path"]: item["spec"] for item in listed}

    def uploader_pods(self) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=UPLOADERS).items)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Sandbox(tmp_path_factory.mktemp("cluster") / "sandbox") as sandbox:
        sandbox.apply(list(sample_manifests()))
        wait_for(
            lambda: upload.record_claim(sandbox.namespace, RECORD) if _has_claim(sandbox) else None,
            30,
            "the sample record's volume",
        )
        assert sandbox._kubelet is not None
        yield Cluster(sandbox, sandbox._kubelet)


def _has_claim(sandbox: Sandbox) -> bool:
    record = kube.get_custom("records", sandbox.namespace, RECORD) or {}
    return bool((record.get("status") or {}).get("claimName"))


@pytest.fixture
def restore_exec_handler(cluster: Cluster) -> Iterator[None]:
    yield
    cluster.sandbox._server.set_exec_handler(cluster.kubelet.exec_in_container)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The uploader Pod ----------------------------------------------------------------------------------------


def test_the_uploader_pod_is_restricted_owned_and_labelled() -> None:
    record = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Record",
        "metadata": {"name": "drives", "namespace": "lab", "uid": "u-1"},
    }
    pod = cluster_upload.uploader_pod(record, "record-drives", "drives-upload-1234")
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "autoscene"
    assert meta["labels"]["autoscene.io/role"] == "uploader"
    assert meta["ownerReferences"][0] | {} == {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Record",
        "name": "drives",
        "uid": "u-1",
        "controller": True,
        # An uploader needs no update on records/finalizers where owner references are enforced.
        "blockOwnerDeletion": False,
    }
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["runAsNonRoot"]
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = spec["containers"]
    assert container["image"] == "busybox:1.36.1"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["volumeMounts"] == [{"name": "record", "mountPath": "/volume"}]
    assert spec["volumes"] == [{"name": "record", "persistentVolumeClaim": {"claimName": "record-drives"}}]
    assert spec["activeDeadlineSeconds"] > 0  # a forgotten uploader ends by itself


def test_why_a_pod_is_not_running_is_read_from_its_status() -> None:
    waiting = {"waiting": {"reason": "ErrImagePull", "message": 'pull access denied for "busybox"'}}
    pod = {
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "uploader", "state": waiting}],
        }
    }
    assert cluster_upload.why_not_running(pod, ["event: FailedMount: volume is busy"]) == (
        'container "uploader" waits: ErrImagePull: pull access denied for "busybox"; '
        "event: FailedMount: volume is busy"
    )
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3"}
    pending = {"status": {"phase": "Pending", "conditions": [unschedulable]}}
    assert cluster_upload.why_not_running(pending) == "not scheduled: Unschedulable: 0/3"
    assert cluster_upload.why_not_running({"status": {}}) == "it is still Pending"


def test_paths_travel_in_batches_short_enough_for_a_command_line() -> None:
    paths = [f"day1/{'x' * 200}-{index}.bin" for index in range(2000)]
    commands = list(cluster_upload.place_commands("/volume/.autoscene-uploads/p", paths))
    assert len(commands) > 1
    assert all(sum(len(arg) for arg in command) < 2 * cluster_upload.COMMAND_BYTES for command in commands)
    pairs = [arg for command in commands for arg in command[6:]]
    assert pairs[0::2] == [str(index) for index in range(2000)] and pairs[1::2] == paths


# Uploads -------------------------------------------------------------------------------------------------


def test_files_arrive_whole_verified_and_registered(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    plain = tmp_path / "in" / "notes 01.txt"
    plain.write_text("weather: sunny\n")
    unicode = tmp_path / "in" / "naïve café ☕.bin"
    unicode.write_bytes(os.urandom(300_000))
    empty = tmp_path / "in" / "empty"
    empty.write_bytes(b"")
    planned = upload.plan([plain, unicode, empty], prefix="day1/cam 0") + upload.plan([plain])
    reported: list[int] = []

    uploaded = cluster_upload.upload_via_exec(cluster.namespace, RECORD, planned, reported.append)

    files = cluster.claim_folder / "files"
    assert [file.path for file in uploaded] == [
        "day1/cam 0/notes 01.txt",
        "day1/cam 0/naïve café ☕.bin",
        "day1/cam 0/empty",
        "notes 01.txt",
    ]
    for (source, path), file in zip(planned, uploaded, strict=True):
        assert (files / path).read_bytes() == source.read_bytes()
        assert file.sha256 == sha256_of(source) and file.size == source.stat().st_size
        entry = cluster.registered()[path]
        assert (entry["sha256"], entry["size"]) == (file.sha256, file.size) and entry["addedAt"]
    assert sum(reported) == sum(source.stat().st_size for source, _ in planned)
    assert cluster.uploader_pods() == []
    assert not (cluster.claim_folder / ".autoscene-uploads").exists()


def test_a_large_file_streams_in_bounded_memory(cluster: Cluster, tmp_path: Path) -> None:
    large = tmp_path / "large.bin"
    block = os.urandom(1 << 20)
    with large.open("wb") as writer:
        for index in range(50):
            writer.write(index.to_bytes(4, "big") + block[4:])
    reported: list[int] = []
    tracemalloc.start()
    try:
        [uploaded] = cluster_upload.upload_via_exec(
            cluster.namespace, RECORD, upload.plan([large], prefix="big"), reported.append
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert uploaded.size == 50 << 20 and uploaded.sha256 == sha256_of(large)
    assert sha256_of(cluster.claim_folder / "files" / "big" / "large.bin") == uploaded.sha256
    # Client and server share this process: each holds a few 1 MiB chunks at a time, never the file.
    assert peak < 20 << 20, f"peak {peak >> 20} MiB"
    assert sum(reported) == 50 << 20 and len(reported) == 50  # once per MiB, as the local copy does


def test_a_corrupted_transfer_is_caught_and_nothing_registered(
    cluster: Cluster, tmp_path: Path, restore_exec_handler: None
) -> None:
    source = tmp_path / "precious.mp4"
    source.write_bytes(b"header " + b"ORIGINAL" * 1000)
    kubelet = cluster.kubelet

    async def corrupting(request: apiserver_exec.ExecRequest, channels: apiserver_exec.ExecChannels) -> int:
        read = channels.read_stdin

        async def corrupted() -> bytes | None:
            data = await read()
            return data.replace(b"ORIGINAL", b"0RIGINAL", 1) if data else data

        channels.read_stdin = corrupted  # type: ignore[method-assign]
        return await kubelet.exec_in_container(request, channels)

    cluster.sandbox._server.set_exec_handler(corrupting)
    with pytest.raises(upload.UploadError, match="checksum mismatch") as raised:
        cluster.upload(upload.plan([source]))
    assert sha256_of(source) in str(raised.value) and "precious.mp4" in str(raised.value)
    assert "precious.mp4" not in cluster.registered()
    assert not (cluster.claim_folder / "files" / "precious.mp4").exists()
    assert cluster.uploader_pods() == []
    assert not (cluster.claim_folder / ".autoscene-uploads").exists()


def test_a_failing_command_in_the_pod_is_reported_with_what_it_said(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "inner.txt").write_text("inner")
    cluster.upload(upload.plan([tmp_path / "a" / "inner.txt"], prefix="blocking"))
    blocking = tmp_path / "blocking"
    blocking.write_text("a file where a folder is")
    with pytest.raises(upload.UploadError, match="moving the files into place.*a folder of that name"):
        cluster.upload(upload.plan([blocking]))
    assert cluster.registered()["blocking/inner.txt"]
    assert "blocking" not in cluster.registered()
    assert cluster.uploader_pods() == []


def test_an_uploader_that_never_runs_says_why(cluster: Cluster, tmp_path: Path) -> None:
    kube.create_custom(
        "records",
        {
            "apiVersion": "autoscene.io/v1alpha1",
            "kind": "Record",
            "metadata": {"name": "elsewhere", "namespace": cluster.namespace},
            "spec": {"storage": {"claimName": "no-such-claim"}},
        },
    )
    source = tmp_path / "a.txt"
    source.write_text("a")
    why = 'did not start within 1 s.*persistentvolumeclaim "no-such-claim" not found'
    with pytest.raises(upload.UploadError, match=why):
        cluster_upload.upload_via_exec(
            cluster.namespace, "elsewhere", upload.plan([source]), lambda _: None, start_timeout=1
        )
    assert cluster.uploader_pods() == []
    assert cluster.registered("elsewhere") == {}


def test_an_unknown_record_is_a_clear_error_and_creates_no_pod(cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    with pytest.raises(upload.UploadError, match='record "nope" does not exist'):
        cluster_upload.upload_via_exec(cluster.namespace, "nope", upload.plan([source]), lambda _: None)
    assert cluster.uploader_pods() == []


def test_the_v4_protocol_without_closing_stdin_works_too(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = cluster_upload.stream

    def v4_only(*args: Any, **kwargs: Any) -> Any:
        return original(*args, _headers={"sec-websocket-protocol": apiserver_exec.V4_PROTOCOL}, **kwargs)

    monkeypatch.setattr(cluster_upload, "stream", v4_only)
    source = tmp_path / "v4.bin"
    source.write_bytes(os.urandom(3 << 20))
    [uploaded] = cluster.upload(upload.plan([source]))
    assert sha256_of(cluster.claim_folder / "files" / "v4.bin") == uploaded.sha256 == sha256_of(source)


def test_an_uploaded_video_fires_the_trigger(cluster: Cluster, tmp_path: Path) -> None:
    clip = make_sample_video(tmp_path / "drive 07.mp4", width=64, height=48, frames=6)
    [uploaded] = cluster.upload(upload.plan([clip], prefix="day2"))

    def finished() -> dict[str, Any] | None:
        for invocation in kube.list_custom("invocations", cluster.namespace):
            if invocation["spec"]["file"] == uploaded.path and invocation.get("status", {}).get("phase") in (
                "Succeeded",
                "Failed",
            ):
                return invocation
        return None

    invocation = wait_for(finished, 30, f"the invocation for {uploaded.path}")
    assert invocation["spec"]["trigger"] == "auto-extract-images"
    assert invocation["spec"]["sha256"] == uploaded.sha256
    assert invocation["status"]["phase"] == "Succeeded", invocation["status"]


# The sandbox's exec and bare Pods --------------------------------------------------------------------------


@pytest.fixture
def idle_pod(cluster: Cluster) -> Iterator[str]:
    name = f"idle-{time.monotonic_ns()}"
    cluster.core.create_namespaced_pod(
        cluster.namespace,
        {
            "metadata": {"name": name},
            "spec": {"containers": [busybox("sleep", "60")]},
        },
    )
    wait_for(lambda: _running(cluster, name), 5, f"pod {name} to run")
    yield name
    cluster.core.delete_namespaced_pod(name, cluster.namespace)


def exec_over_websocket(cluster: Cluster, pod: str, command: list[str], protocol: str) -> list[bytes]:
    """The raw messages of an exec, read with a plain websocket client offering only `protocol`."""
    query = "&".join(f"command={part}" for part in command) + "&stdout=true&stderr=true"
    path = f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}/exec"
    url = cluster.sandbox.url.replace("http", "ws") + path
    connection = websocket.create_connection(f"{url}?{query}", subprotocols=[protocol], timeout=5)
    assert connection.getsubprotocol() == protocol
    messages = []
    try:
        while True:
            opcode, data = connection.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            messages.append(data)
    except websocket.WebSocketConnectionClosedException:
        pass
    return messages


@pytest.mark.parametrize("protocol", [apiserver_exec.V4_PROTOCOL, apiserver_exec.V5_PROTOCOL])
def test_exec_speaks_the_channel_protocol(cluster: Cluster, idle_pod: str, protocol: str) -> None:
    script = "echo%20out;echo%20err%3E%262;exit%203"  # URL-encoded: echo out;echo err>&2;exit 3
    messages = exec_over_websocket(cluster, idle_pod, ["sh", "-c", script], protocol)
    by_channel: dict[int, bytes] = {}
    for message in messages:
        by_channel[message[0]] = by_channel.get(message[0], b"") + message[1:]
    assert by_channel[1] == b"out\n" and by_channel[2] == b"err\n"
    status = json.loads(by_channel[3])
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_exec_of_a_missing_executable_fails_with_a_message(cluster: Cluster, idle_pod: str) -> None:
    [message] = exec_over_websocket(cluster, idle_pod, ["no-such-tool"], apiserver_exec.V5_PROTOCOL)
    assert message[0] == 3
    status = json.loads(message[1:])
    assert status["status"] == "Failure" and "no-such-tool" in status["message"]


def test_exec_into_a_pod_that_does_not_run_is_refused(cluster: Cluster) -> None:
    cluster.core.create_namespaced_pod(
        cluster.namespace,
        {
            "metadata": {"name": "never"},
            "spec": {"containers": [{"name": "uploader", "image": "nowhere/unknown:1", "command": ["true"]}]},
        },
    )
    pod = wait_for(lambda: _waiting(cluster, "never"), 5, "the pod to report its image")
    assert pod.status.container_statuses[0].state.waiting.reason == "ErrImagePull"
    shell = cluster_upload.PodShell(cluster.sandbox.api, cluster.namespace, "never")
    refused = 'cannot run commands in the uploader pod "never": .* is Pending'
    with pytest.raises(upload.UploadError, match=refused):
        shell.run("trying", ["true"])
    cluster.core.delete_namespaced_pod("never", cluster.namespace)


def _waiting(cluster: Cluster, name: str) -> Any:
    pod = cluster.core.read_namespaced_pod(name, cluster.namespace)
    return pod if pod.status and pod.status.container_statuses else None


def test_a_bare_pod_runs_to_its_end_and_a_deleted_one_stops(cluster: Cluster, tmp_path: Path) -> None:
    cluster.core.create_namespaced_pod(
        cluster.namespace,
        {
            "metadata": {"name": "short"},
            "spec": {"restartPolicy": "Never", "containers": [busybox("sh", "-c", "exit 4")]},
        },
    )
    pod = wait_for(lambda: _finished(cluster, "short"), 5, "the pod to end")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 4
    marker = tmp_path / "alive"
    cluster.core.create_namespaced_pod(
        cluster.namespace,
        {
            "metadata": {"name": "long"},
            "spec": {
                "containers": [busybox("sh", "-c", f"while true; do touch '{marker}'; sleep 0.05; done")]
            },
        },
    )
    wait_for(lambda: marker.exists() or None, 5, "the pod's command to run")
    cluster.core.delete_namespaced_pod("long", cluster.namespace)
    wait_for(
        lambda: all(pod.name != "long" for pod in cluster.kubelet._pods.values()) or None,
        2,
        "the kubelet to notice",
    )
    time.sleep(0.2)
    marker.unlink()
    time.sleep(0.3)
    assert not marker.exists()
    cluster.core.delete_namespaced_pod("short", cluster.namespace)


def busybox(*command: str) -> dict[str, Any]:
    return {"name": "main", "image": "busybox:1.36.1", "command": list(command)}


def _running(cluster: Cluster, name: str) -> Any:
    pod = cluster.core.read_namespaced_pod(name, cluster.namespace)
    return pod if pod.status and pod.status.phase == "Running" else None


def _finished(cluster: Cluster, name: str) -> Any:
    pod = cluster.core.read_namespaced_pod(name, cluster.namespace)
    return pod if pod.status and pod.status.phase in ("Succeeded", "Failed") else None


def test_hundreds_of_files_go_in_one_upload(cluster: Cluster, tmp_path: Path) -> None:
    """Every file's path and checksum travel in the exec's command line, far past 8 KiB here."""
    folder = tmp_path / "many"
    folder.mkdir()
    sources = []
    for index in range(300):
        source = folder / f"frame-{index:04d}.bin"
        source.write_bytes(index.to_bytes(2, "big"))
        sources.append(source)
    uploaded = cluster.upload(upload.plan(sources, "many"))
    assert len(uploaded) == 300
    registered = cluster.registered()
    assert all(registered[f"many/{source.name}"]["sha256"] == sha256_of(source) for source in sources)
