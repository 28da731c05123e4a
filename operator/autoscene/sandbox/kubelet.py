"""The sandbox's kubelet for bare Pods and for `kubectl exec`: what the Job runner does not cover.

- Bare Pods (created directly, not by a Job) are run as the kubelet would: once their claims exist and
  their images have a local stand-in, their containers' commands run as local processes and the Pod
  becomes `Running` (with container statuses, conditions and IPs), then `Succeeded` or `Failed` when the
  containers end, or when `activeDeadlineSeconds` passes. A Pod that cannot start stays `Pending` and
  says why in its status, as a real one does: `Unschedulable` for a missing claim, `ErrImagePull` for an
  image without a stand-in. Deleting the Pod stops its processes.
- `pods/<name>/exec` commands of any running Pod run as local processes, with the container's paths
  mapped to local folders exactly as the Job runner maps them (`container_paths`, `local_argv`), their
  stdin, stdout and stderr streamed through the API server's websocket channels.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import timestamps
from .apiserver import EmbeddedApiServer
from .apiserver_exec import ExecChannels, ExecFailure, ExecRequest
from .jobrunner import (
    LocalImage,
    UnrunnableContainer,
    container_environment,
    container_identity,
    container_paths,
    kill_group,
    local_argv,
)

logger = logging.getLogger(__name__)
LOCAL_IP = "127.0.0.1"
PIPE_CHUNK = 1 << 16
FINISHED_PHASES = ("Succeeded", "Failed")


@dataclass
class LocalPod:
    """A bare Pod this kubelet runs: its own folder (emptyDirs, home) and its containers' processes."""

    namespace: str
    name: str
    uid: str
    folder: Path
    deleted: threading.Event = field(default_factory=threading.Event)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


@dataclass
class Started:
    """A container's process, or why it could not start (then `process` is None)."""

    container: Mapping[str, Any]
    process: subprocess.Popen[bytes] | None
    started_at: str
    log: Path
    error: str


@dataclass
class Ended:
    """A container that ran: how it ended, as its terminated state says."""

    started: Started
    exit_code: int
    reason: str
    message: str
    finished_at: str

    def status(self) -> dict[str, Any]:
        terminated = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started.started_at,
            "finishedAt": self.finished_at,
        }
        if self.message:
            terminated["message"] = self.message
        return {
            **container_identity(self.started.container, started=True),
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"terminated": terminated},
        }


class LocalKubelet:
    """Runs bare Pods and serves exec for the sandbox's API server, until stopped."""

    def __init__(
        self,
        api: client.ApiClient,
        server: EmbeddedApiServer,
        volumes: Path,
        images: Mapping[str, LocalImage],
        poll_seconds: float = 0.1,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._server = server
        self._volumes = volumes
        self._images = dict(images)
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._pods: dict[str, LocalPod] = {}
        self._told: dict[str, str] = {}  # uid → why the Pod waits, as last reported
        self._given_up: set[str] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._server.set_exec_handler(self.exec_in_container)
        thread = threading.Thread(target=self._watch_pods, name="local-kubelet", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._server.set_exec_handler(None)
        self._stop.set()
        for pod in list(self._pods.values()):
            pod.deleted.set()
        for thread in self._threads:
            thread.join(timeout=10)

    # Exec ------------------------------------------------------------------------------------------

    async def exec_in_container(self, request: ExecRequest, channels: ExecChannels) -> int:
        """Run the command as a local process wired to the channels; its exit code."""
        pod = request.pod
        container = next(c for c in pod["spec"]["containers"] if c["name"] == request.container)
        running = self._pods.get(pod["metadata"]["uid"])
        with _pod_folder(running) as folder:
            try:
                paths = container_paths(pod, container, self._volumes, self._images, folder)
                argv = local_argv(list(request.command), paths)
            except UnrunnableContainer as error:
                raise ExecFailure(f"exec failed: {error}") from None
            env, cwd = container_environment(container, paths, folder)
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.PIPE if request.stdin else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as error:
                raise ExecFailure(f"exec failed: {argv[0]}: {error.strerror}") from None
            return await _attend(process, channels)

    # Bare Pods -------------------------------------------------------------------------------------

    def _watch_pods(self) -> None:
        while not self._stop.is_set():
            try:
                pods = [self._core.api_client.sanitize_for_serialization(pod) for pod in self._list_pods()]
            except Exception as error:  # the API server may be starting or stopping
                logger.debug("listing pods failed: %s", error)
                self._stop.wait(self._poll_seconds)
                continue
            present = {pod["metadata"]["uid"] for pod in pods}
            for uid in set(self._pods) - present:
                self._pods.pop(uid).deleted.set()
            for pod in pods:
                if self._is_new_bare_pod(pod):
                    self._admit(pod)
            self._stop.wait(self._poll_seconds)

    def _list_pods(self) -> list[Any]:
        return list(self._core.list_pod_for_all_namespaces().items)

    def _is_new_bare_pod(self, pod: Mapping[str, Any]) -> bool:
        uid = pod["metadata"]["uid"]
        phase = (pod.get("status") or {}).get("phase")
        return (
            is_bare(pod)
            and uid not in self._pods
            and uid not in self._given_up
            and phase not in FINISHED_PHASES
            and not pod["metadata"].get("deletionTimestamp")
        )

    def _admit(self, pod: dict[str, Any]) -> None:
        """Start the Pod when it can start; else say why it waits (once per reason)."""
        meta = pod["metadata"]
        missing = self._missing_claim(pod)
        if missing is not None:
            message = f'0/1 nodes are available: persistentvolumeclaim "{missing}" not found.'
            self._tell(pod, message, {"phase": "Pending", "conditions": [_unschedulable(message)]})
            return
        folder = Path(tempfile.mkdtemp(prefix=f"{meta['name']}-"))
        try:
            for container in _all_containers(pod):
                container_paths(pod, container, self._volumes, self._images, folder)
        except UnrunnableContainer as error:
            shutil.rmtree(folder, ignore_errors=True)
            self._given_up.add(meta["uid"])
            self._patch_status(meta, _waiting_status(pod, error.reason, str(error)))
            return
        local = LocalPod(meta["namespace"], meta["name"], meta["uid"], folder)
        self._pods[local.uid] = local
        thread = threading.Thread(
            target=self._run_pod, args=(pod, local), name=f"pod-{local.name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _missing_claim(self, pod: Mapping[str, Any]) -> str | None:
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            try:
                self._core.read_namespaced_persistent_volume_claim(claim, pod["metadata"]["namespace"])
            except ApiException as error:
                if error.status == 404:
                    return str(claim)
                raise
        return None

    def _tell(self, pod: Mapping[str, Any], why: str, pod_status: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if self._told.get(uid) != why:
            self._told[uid] = why
            self._patch_status(pod["metadata"], pod_status)

    def _run_pod(self, pod: dict[str, Any], local: LocalPod) -> None:
        try:
            self._run_to_the_end(pod, local)
        except Exception:
            logger.exception("running pod %s/%s failed", local.namespace, local.name)
        finally:
            for process in local.processes:
                kill_group(process)
                process.wait()
            shutil.rmtree(local.folder, ignore_errors=True)

    def _run_to_the_end(self, pod: dict[str, Any], local: LocalPod) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        deadline = spec.get("activeDeadlineSeconds")
        ends_at = None if deadline is None else time.monotonic() + float(deadline)
        start_time = _now()
        for container in spec.get("initContainers") or []:
            ended = self._wait(self._start(pod, container, local), local, ends_at)
            if ended.exit_code != 0:
                self._finish(pod, local, [ended], start_time, "initContainerStatuses")
                return
        started = [self._start(pod, container, local) for container in spec["containers"]]
        running = {
            "phase": "Running",
            "startTime": start_time,
            **_addresses(),
            "conditions": _conditions(ready=True),
            "containerStatuses": [_running_status(one) for one in started],
        }
        self._patch_status(meta, running)
        results = [self._wait(one, local, ends_at) for one in started]
        self._finish(pod, local, results, start_time, "containerStatuses")

    def _start(self, pod: dict[str, Any], container: dict[str, Any], local: LocalPod) -> Started:
        started_at = _now()
        log = local.folder / f"{container['name']}.log"
        paths = container_paths(pod, container, self._volumes, self._images, local.folder)
        command = list(container.get("command") or []) + list(container.get("args") or [])
        try:
            if not command:
                raise UnrunnableContainer("StartError", f'container "{container["name"]}" has no command')
            argv = local_argv(command, paths)
            env, cwd = container_environment(container, paths, local.folder)
            with log.open("wb") as output:
                process = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except (UnrunnableContainer, OSError) as error:
            return Started(container, None, started_at, log, str(error))
        local.processes.append(process)
        return Started(container, process, started_at, log, "")

    def _wait(self, started: Started, local: LocalPod, ends_at: float | None) -> Ended:
        process = started.process
        if process is None:
            return Ended(started, 128, "StartError", started.error, _now())
        while True:
            try:
                code = process.wait(timeout=self._poll_seconds)
                return Ended(started, code, "Completed" if code == 0 else "Error", "", _now())
            except subprocess.TimeoutExpired:
                pass
            if local.deleted.is_set() or self._stop.is_set():
                kill_group(process)
                return Ended(started, process.wait(), "Error", "", _now())
            if ends_at is not None and time.monotonic() >= ends_at:
                kill_group(process)
                return Ended(started, process.wait(), "DeadlineExceeded", "", _now())

    def _finish(
        self, pod: dict[str, Any], local: LocalPod, results: list[Ended], start_time: str, statuses_key: str
    ) -> None:
        if local.deleted.is_set():
            return
        log = "".join(result.started.log.read_text(errors="replace") for result in results)
        self._server.set_pod_log(local.namespace, local.name, log)
        failed = any(result.exit_code != 0 for result in results)
        finished: dict[str, Any] = {
            "phase": "Failed" if failed else "Succeeded",
            "startTime": start_time,
            "conditions": _conditions(ready=False, reason="PodFailed" if failed else "PodCompleted"),
            statuses_key: [result.status() for result in results],
        }
        if any(result.reason == "DeadlineExceeded" for result in results):
            finished["reason"] = "DeadlineExceeded"
            finished["message"] = "Pod was active on the node longer than the specified deadline"
        self._patch_status(pod["metadata"], finished)

    def _patch_status(self, meta: Mapping[str, Any], pod_status: dict[str, Any]) -> None:
        try:
            self._core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": pod_status})
        except ApiException as error:
            if error.status != 404:  # a Pod deleted meanwhile simply goes away
                raise


def is_bare(pod: Mapping[str, Any]) -> bool:
    """A Pod no Job controls: the Job runner runs the others."""
    return not any(ref.get("kind") == "Job" for ref in pod["metadata"].get("ownerReferences") or [])


async def _attend(process: asyncio.subprocess.Process, channels: ExecChannels) -> int:
    """Stream stdin in and stdout and stderr out until the process ends; its exit code.

    The session ends with the process, as with the kubelet: stdin it did not read is dropped.
    """
    feeding = asyncio.create_task(_feed(process, channels))
    try:
        assert process.stdout is not None and process.stderr is not None
        await asyncio.gather(
            _pump(process.stdout, channels.write_stdout), _pump(process.stderr, channels.write_stderr)
        )
        return await process.wait()
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        if process.returncode is None:  # the client went away: so does the command
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _feed(process: asyncio.subprocess.Process, channels: ExecChannels) -> None:
    if process.stdin is None:
        return
    try:
        while (data := await channels.read_stdin()) is not None:
            process.stdin.write(data)
            await process.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command stopped reading
    finally:
        process.stdin.close()


async def _pump(reader: asyncio.StreamReader, write: Callable[[bytes], Awaitable[None]]) -> None:
    delivering = True
    while chunk := await reader.read(PIPE_CHUNK):
        if delivering:
            try:
                await write(chunk)
            except ConnectionError:
                delivering = False  # keep reading, so that the command is never blocked on a full pipe


@contextlib.contextmanager
def _pod_folder(running: LocalPod | None) -> Iterator[Path]:
    """The Pod's own folder when this kubelet runs it; else one for this command only."""
    if running is not None:
        yield running.folder
        return
    folder = Path(tempfile.mkdtemp(prefix="exec-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _all_containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(pod["spec"].get("initContainers") or []) + list(pod["spec"]["containers"])


def _running_status(started: Started) -> dict[str, Any]:
    if started.process is None:
        state: dict[str, Any] = {"waiting": {"reason": "StartError", "message": started.error}}
    else:
        state = {"running": {"startedAt": started.started_at}}
    return {
        **container_identity(started.container, started=True),
        "ready": started.process is not None,
        "started": started.process is not None,
        "restartCount": 0,
        "state": state,
    }


def _waiting_status(pod: Mapping[str, Any], reason: str, message: str) -> dict[str, Any]:
    statuses = [
        {
            **container_identity(container, started=False),
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}},
        }
        for container in pod["spec"]["containers"]
    ]
    conditions = _conditions(ready=False, reason="ContainersNotReady")
    return {"phase": "Pending", "conditions": conditions, "containerStatuses": statuses}


def _conditions(ready: bool, reason: str = "") -> list[dict[str, Any]]:
    return [
        _condition("PodScheduled", True),
        _condition("Initialized", True),
        _condition("ContainersReady", ready, reason),
        _condition("Ready", ready, reason),
    ]


def _unschedulable(message: str) -> dict[str, Any]:
    return {**_condition("PodScheduled", False, "Unschedulable"), "message": message}


def _condition(kind: str, status: bool, reason: str = "") -> dict[str, Any]:
    condition = {"type": kind, "status": "True" if status else "False", "lastTransitionTime": _now()}
    if reason and not status:
        condition["reason"] = reason
    return condition


def _addresses() -> dict[str, Any]:
    return {"hostIP": LOCAL_IP, "podIP": LOCAL_IP, "podIPs": [{"ip": LOCAL_IP}]}


def _now() -> str:
    return timestamps.render(timestamps.now())
