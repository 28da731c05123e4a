"""The sandbox's kubelet: runs Pods as local processes and serves exec into them.

- It follows the Pods it is given (a field selector, e.g. `spec.nodeName=<node>`, and a predicate)
  with a list and a watch, as the kubelet does. A Pod whose claims exist and whose images have a local
  stand-in has its containers' commands run as local processes and becomes `Running` (container
  statuses, conditions, IPs), then `Succeeded` or `Failed` when they end, or when
  `activeDeadlineSeconds` passes. `restartPolicy` `Always` and `OnFailure` restart the containers
  (with a back-off, counted in `restartCount`). A Pod that cannot start stays `Pending` and says why,
  as a real one does: `Unschedulable` for a missing claim, `ErrImagePull` for an image without a
  stand-in, `CreateContainerConfigError` for a volume or variable it cannot provide. A container
  whose process cannot be started (no such program, no command) ends at once as containerd's does:
  terminated with reason `StartError` and exit code 128, a failure like any other.
- Volumes: claims map to `<volumes>/<namespace>/<claim>`, emptyDirs to the Pod's own folder;
  `configMap`, `secret`, `downwardAPI` and `projected` volumes (the service-account token the
  ServiceAccount admission plugin adds included, requested through the TokenRequest API) are written
  into the Pod's folder. Clients read a service-account token by its fixed path, so mounts under
  `/var/run/secrets/` are bind-mounted there in a private mount namespace (root only); every other
  path is mapped by rewriting the command line and variables (`containers.container_paths`).
- Deleting a Pod stops its processes (SIGTERM, then SIGKILL after the grace period) and, against a
  real API server, confirms the deletion as the kubelet does (a delete with grace period 0).
- `pods/<name>/exec` commands of any running Pod run as local processes, with the container's paths
  mapped exactly as for its command, stdin, stdout and stderr streamed through the websocket channels.
- Each container's output is kept in the Pod's folder until the Pod is deleted (`log_path`).
"""

import asyncio
import base64
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

from .. import kube, timestamps, watching
from .apiserver_exec import ExecChannels, ExecFailure, ExecRequest
from .containers import (
    LOCAL_IP,
    LocalImage,
    UnrunnableContainer,
    container_command,
    container_environment,
    container_identity,
    container_paths,
    downward_api_value,
    kill_group,
    local_argv,
    start_failure,
    termination_message,
)

logger = logging.getLogger(__name__)
PIPE_CHUNK = 1 << 16
FINISHED_PHASES = ("Succeeded", "Failed")
# Mounts clients open by a fixed path (the in-cluster config reads /var/run/secrets/...), so they are
# bind-mounted rather than mapped by rewriting the command line.
BOUND_MOUNT_PREFIX = "/var/run/secrets/"
# The kubelet's restart back-off doubles from 10 s up to 5 min; locally 1 s up to 30 s.
RESTART_BACKOFF_SECONDS = (1.0, 30.0)
DEFAULT_GRACE_SECONDS = 30
CONFIG_RETRY_SECONDS = 2.0
MATERIALIZED_KINDS = ("configMap", "secret", "downwardAPI", "projected")


@dataclass
class LocalPod:
    """A Pod this kubelet runs: its own folder (volumes, logs, home) and its containers' processes."""

    namespace: str
    name: str
    uid: str
    folder: Path
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    deleted: threading.Event = field(default_factory=threading.Event)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)


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

    def terminated(self) -> dict[str, Any]:
        terminated = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started.started_at,
            "finishedAt": self.finished_at,
        }
        if self.message:
            terminated["message"] = self.message
        return terminated

    def status(self, restarts: int = 0) -> dict[str, Any]:
        return {
            **container_identity(self.started.container, started=True),
            "ready": False,
            "started": False,
            "restartCount": restarts,
            "state": {"terminated": self.terminated()},
        }


class LocalKubelet:
    """Runs the Pods it follows as local processes, and serves exec into them, until stopped.

    `field_selector` chooses the Pods (the sandbox: all; a node agent: its node's, `spec.nodeName=`).
    `service` is the API server's address that Pods reach as the `kubernetes` Service
    (`KUBERNETES_SERVICE_HOST` / `_PORT`), when there is one to reach in-cluster; `hosts` (address →
    names) go into each Pod's kubelet-managed /etc/hosts, standing in for cluster DNS (root only).
    """

    def __init__(
        self,
        api: client.ApiClient,
        volumes: Path,
        images: Mapping[str, LocalImage],
        *,
        field_selector: str = "",
        service: tuple[str, int] | None = None,
        confirm_deletion: bool = False,
        hosts: Mapping[str, list[str]] | None = None,
    ) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._volumes = volumes
        self._images = dict(images)
        self._selectors: dict[str, Any] = {"field_selector": field_selector} if field_selector else {}
        self._service = service
        self._confirm_deletion = confirm_deletion
        self._hosts = dict(hosts or {})
        self._stop = threading.Event()
        self._pods: dict[str, LocalPod] = {}
        self._by_name: dict[tuple[str, str], LocalPod] = {}
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        self._told: dict[str, str] = {}  # uid → why the Pod waits, as last reported
        self._given_up: set[str] = set()
        self._follower: threading.Thread | None = None
        self._threads: list[threading.Thread] = []  # the Pods' threads
        self._threads_kept = 64  # how many there were after the last letting go
        self._lock = threading.Lock()

    def start(self) -> None:
        self._follower = threading.Thread(target=self._follow_pods, name="local-kubelet", daemon=True)
        self._follower.start()

    def stop(self) -> None:
        self._stop.set()
        for pod in list(self._pods.values()):
            pod.deleted.set()
        if self._follower is not None:
            self._follower.join(timeout=10)  # then no Pod is admitted any more
        for pod in list(self._pods.values()):
            pod.deleted.set()
        for thread in list(self._threads):
            thread.join(timeout=10)
        for pod in list(self._pods.values()):
            shutil.rmtree(pod.folder, ignore_errors=True)

    def pods(self) -> list[dict[str, Any]]:
        """Every Pod it follows, as last seen."""
        return list(self._known.values())

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Pod as last seen through the watch."""
        return self._known.get((namespace, name))

    def log_path(self, namespace: str, name: str, container: str, previous: bool = False) -> Path | None:
        """The file holding what the container wrote (stdout and stderr), while the Pod exists; with
        `previous`, what its last instance wrote before a restart (`kubectl logs --previous`). None when
        there is no such file: the Pod is not here, the container has not started or never restarted."""
        local = self._by_name.get((namespace, name))
        if local is None:
            return None
        path = _log_file(local.folder, container, previous)
        return path if path.exists() else None

    def container_log(self, namespace: str, name: str, container: str, previous: bool = False) -> str | None:
        """What `log_path` holds, as text; None when there is none."""
        path = self.log_path(namespace, name, container, previous)
        try:
            return None if path is None else path.read_text(errors="replace")
        except FileNotFoundError:  # the Pod was deleted meanwhile
            return None

    def is_running(self, namespace: str, name: str) -> bool:
        local = self._by_name.get((namespace, name))
        return local is not None and not local.ended.is_set()

    # Exec ------------------------------------------------------------------------------------------

    async def exec_in_container(self, request: ExecRequest, channels: ExecChannels) -> int:
        """Run the command as a local process wired to the channels; its exit code."""
        pod = request.pod
        container = next(c for c in pod["spec"]["containers"] if c["name"] == request.container)
        running = self._pods.get(pod["metadata"]["uid"])
        with _pod_folder(running) as folder:
            try:
                paths = container_paths(pod, container, self._volumes, self._images, folder)
            except UnrunnableContainer as error:
                raise ExecFailure(f"exec failed: {error}") from None
            try:
                argv = local_argv(list(request.command), paths)
            except UnrunnableContainer as error:
                raise ExecFailure(_exec_failure(str(error))) from None
            env, cwd = container_environment(
                container,
                paths,
                folder,
                pod,
                self._service_env(),
                self._sources(pod["metadata"]["namespace"]),
            )
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
                raise ExecFailure(_exec_failure(f'exec: "{argv[0]}": {error.strerror}')) from None
            return await _attend(process, channels)

    # Following Pods --------------------------------------------------------------------------------

    def _follow_pods(self) -> None:
        watching.follow(
            self._core.list_pod_for_all_namespaces,
            self._on_pod,
            self._on_pod_deleted,
            self._stop,
            on_listed=self._on_listed,
            **self._selectors,
        )

    def _on_listed(self, pods: list[tuple[str, str, str]]) -> None:
        present = {uid for _, _, uid in pods}
        for key, known in list(self._known.items()):
            if known["metadata"]["uid"] not in present:
                del self._known[key]  # deleted while the watch was down
        for uid in set(self._pods) - present:
            self._forget(self._pods[uid])

    def _on_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self._known[(meta["namespace"], meta["name"])] = pod
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            local = self._pods.get(uid)
            if local is not None:
                local.grace_seconds = float(meta.get("deletionGracePeriodSeconds") or 0)
                local.deleted.set()  # its thread stops the processes, then confirms the deletion
            elif (pod.get("status") or {}).get("phase") not in FINISHED_PHASES:
                self._confirm_deleted(meta)
            return
        phase = (pod.get("status") or {}).get("phase")
        if uid in self._pods or uid in self._given_up or phase in FINISHED_PHASES:
            return
        self._admit(pod)

    def _on_pod_deleted(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self._known.pop((meta["namespace"], meta["name"]), None)
        local = self._pods.get(meta["uid"])
        if local is not None:
            self._forget(local)

    def _forget(self, local: LocalPod) -> None:
        """The Pod is gone from the API: stop it, and drop its folder once its processes ended."""
        local.grace_seconds = 0
        local.deleted.set()

        def clean() -> None:
            local.ended.wait(timeout=60)
            with self._lock:
                self._pods.pop(local.uid, None)
                if self._by_name.get((local.namespace, local.name)) is local:
                    del self._by_name[(local.namespace, local.name)]
            shutil.rmtree(local.folder, ignore_errors=True)

        threading.Thread(target=clean, name=f"forget-{local.name}", daemon=True).start()

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
        grace = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        local = LocalPod(meta["namespace"], meta["name"], meta["uid"], folder, float(grace))
        with self._lock:
            self._pods[local.uid] = local
            self._by_name[(local.namespace, local.name)] = local
        thread = threading.Thread(
            target=self._run_pod, args=(pod, local), name=f"pod-{local.name}", daemon=True
        )
        thread.start()
        self._keep(thread)

    def _keep(self, thread: threading.Thread) -> None:
        """Keep a Pod's thread to join at stop; the ended ones are let go whenever the list has doubled
        since (so a kubelet that ran 100,000 Pods does not hold 100,000 threads, at a cost per Pod
        that does not grow)."""
        self._threads.append(thread)
        if len(self._threads) > 2 * self._threads_kept:
            self._threads = [kept for kept in self._threads if kept.is_alive()]
            self._threads_kept = max(len(self._threads), 64)

    def _missing_claim(self, pod: Mapping[str, Any]) -> str | None:
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            try:
                path = f"/api/v1/namespaces/{pod['metadata']['namespace']}/persistentvolumeclaims/{claim}"
                kube.unread(kube.request_raw("GET", path, api=self._api))  # whether it exists is enough
            except ApiException as error:
                if error.status == 404:
                    return str(claim)
                if error.status == 403:
                    # The Node authorizer learns of a just-bound Pod's claims a moment later; the
                    # scheduler already found them bound.
                    continue
                raise
        return None

    def _tell(self, pod: Mapping[str, Any], why: str, pod_status: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if self._told.get(uid) != why:
            self._told[uid] = why
            self._patch_status(pod["metadata"], pod_status)

    # Running a Pod ---------------------------------------------------------------------------------

    def _run_pod(self, pod: dict[str, Any], local: LocalPod) -> None:
        try:
            self._run_to_the_end(pod, local)
        except Exception:
            logger.exception("running pod %s/%s failed", local.namespace, local.name)
        finally:
            self._stop_processes(local)
            local.ended.set()
            if local.deleted.is_set() and not self._stop.is_set():
                self._confirm_deleted({"namespace": local.namespace, "name": local.name, "uid": local.uid})

    def _run_to_the_end(self, pod: dict[str, Any], local: LocalPod) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        deadline = spec.get("activeDeadlineSeconds")
        ends_at = None if deadline is None else time.monotonic() + float(deadline)
        start_time = _now()
        if not self._await_config(pod, local):
            return
        for container in spec.get("initContainers") or []:
            ended = self._wait(self._start(pod, container, local), local, ends_at)
            if self._stopping(local):
                return
            if ended.exit_code != 0:
                self._finish(pod, local, [ended], start_time, "initContainerStatuses")
                return
        policy = spec.get("restartPolicy") or "Always"
        restarts, previous = 0, None
        while True:
            started = [self._start(pod, container, local) for container in spec["containers"]]
            if any(one.process is not None for one in started):
                # Ready only while every container runs; one that could not start has ended already.
                running = {
                    "phase": "Running",
                    "startTime": start_time,
                    **_addresses(),
                    "conditions": _conditions(ready=all(one.process is not None for one in started)),
                    "containerStatuses": [_running_status(one, restarts, previous) for one in started],
                }
                self._patch_status(meta, running)
            results = [self._wait(one, local, ends_at) for one in started]
            if self._stopping(local):
                return
            failed = any(result.exit_code != 0 for result in results)
            deadline_hit = any(result.reason == "DeadlineExceeded" for result in results)
            if deadline_hit or not (policy == "Always" or (policy == "OnFailure" and failed)):
                self._finish(pod, local, results, start_time, "containerStatuses", restarts)
                return
            restarts += 1
            previous = results
            backoff = min(RESTART_BACKOFF_SECONDS[0] * 2 ** (restarts - 1), RESTART_BACKOFF_SECONDS[1])
            self._patch_status(meta, _backing_off(results, restarts))
            if local.deleted.wait(backoff) or self._stop.is_set():
                return

    def _await_config(self, pod: dict[str, Any], local: LocalPod) -> bool:
        """As the kubelet does, hold the containers while what they need is missing, and try again
        every CONFIG_RETRY_SECONDS until it appears: a volume's or an env source (a ConfigMap, a
        Secret, one of their keys) is waiting with reason CreateContainerConfigError; an API call
        that failed (a token the API server would not give yet) is ContainerCreating, as a kubelet
        retries a volume mount. False when the Pod goes first."""
        told = ""
        while not self._stopping(local):
            try:
                self._materialize_volumes(pod, local.folder)
                for container in _all_containers(pod):
                    paths = container_paths(pod, container, self._volumes, self._images, local.folder)
                    sources = self._sources(pod["metadata"]["namespace"])
                    container_environment(container, paths, local.folder, pod, {}, sources)
                return True
            except UnrunnableContainer as error:
                reason, message = error.reason, str(error)
            except ApiException as error:
                reason = "ContainerCreating"
                message = f"MountVolume.SetUp failed: {error.status} {error.reason}"
                logger.warning("pod %s/%s: %s", local.namespace, local.name, message)
            if message != told:
                self._patch_status(pod["metadata"], _waiting_status(pod, reason, message))
                told = message
            local.deleted.wait(CONFIG_RETRY_SECONDS)
        return False

    def _stopping(self, local: LocalPod) -> bool:
        return local.deleted.is_set() or self._stop.is_set()

    def _start(self, pod: dict[str, Any], container: dict[str, Any], local: LocalPod) -> Started:
        """Start the container's process; one that cannot start says why (`Started.error`)."""
        started_at = _now()
        log = _log_file(local.folder, container["name"])
        if log.exists():  # a restart: the last instance's log is what `kubectl logs --previous` reads
            os.replace(log, _log_file(local.folder, container["name"], previous=True))
        log.touch()  # `kubectl logs` answers, empty, for a container that never started
        message_file = local.folder / f"{container['name']}.termination-log"
        message_file.unlink(missing_ok=True)  # a restarted container starts without one
        paths = container_paths(pod, container, self._volumes, self._images, local.folder, message_file)
        try:
            command = container_command(container, self._images)
            try:
                program = local_argv(command, paths)
            except UnrunnableContainer as error:
                raise UnrunnableContainer(error.reason, start_failure(str(error))) from None
            argv = _with_bound_mounts(program, self._binds(pod, container, local.folder))
            env, cwd = container_environment(
                container,
                paths,
                local.folder,
                pod,
                self._service_env(),
                self._sources(pod["metadata"]["namespace"]),
            )
            with log.open("ab") as output:
                try:
                    process = subprocess.Popen(
                        argv,
                        env=env,
                        cwd=cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                except OSError as error:
                    why = f'exec: "{program[0]}": {error.strerror}'
                    raise UnrunnableContainer("StartError", start_failure(why)) from None
        except UnrunnableContainer as error:
            return Started(container, None, started_at, log, str(error))
        local.processes.append(process)
        return Started(container, process, started_at, log, "")

    def _wait(self, started: Started, local: LocalPod, ends_at: float | None) -> Ended:
        process = started.process
        if process is None:
            return _start_error(started)
        while True:
            try:
                code = process.wait(timeout=0.1)
                return Ended(
                    started, code, "Completed" if code == 0 else "Error", _message(started, code), _now()
                )
            except subprocess.TimeoutExpired:
                pass
            if self._stopping(local):
                return Ended(started, -1, "Error", "", _now())
            if ends_at is not None and time.monotonic() >= ends_at:
                kill_group(process)
                return Ended(started, process.wait(), "DeadlineExceeded", "", _now())

    def _stop_processes(self, local: LocalPod) -> None:
        """SIGTERM to every process group, SIGKILL to what still runs after the grace period."""
        alive = [process for process in local.processes if process.poll() is None]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        ends_at = time.monotonic() + (0 if self._stop.is_set() else local.grace_seconds)
        for process in alive:
            try:
                process.wait(timeout=max(ends_at - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                kill_group(process)
                process.wait()
        local.processes.clear()

    def _finish(
        self,
        pod: dict[str, Any],
        local: LocalPod,
        results: list[Ended],
        start_time: str,
        statuses_key: str,
        restarts: int = 0,
    ) -> None:
        if local.deleted.is_set():
            return
        failed = any(result.exit_code != 0 for result in results)
        finished: dict[str, Any] = {
            "phase": "Failed" if failed else "Succeeded",
            "startTime": start_time,
            "conditions": _conditions(ready=False, reason="PodFailed" if failed else "PodCompleted"),
            statuses_key: [result.status(restarts) for result in results],
        }
        if any(result.reason == "DeadlineExceeded" for result in results):
            finished["reason"] = "DeadlineExceeded"
            finished["message"] = "Pod was active on the node longer than the specified deadline"
        self._patch_status(pod["metadata"], finished)

    def _patch_status(self, meta: Mapping[str, Any], pod_status: dict[str, Any]) -> None:
        try:
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            body = {"status": pod_status}
            kube.unread(
                kube.request_raw("PATCH", path, body, content_type=kube.STRATEGIC_MERGE_PATCH, api=self._api)
            )
        except ApiException as error:
            if error.status != 404:  # a Pod deleted meanwhile simply goes away
                raise

    def _confirm_deleted(self, meta: Mapping[str, Any]) -> None:
        """What the kubelet does once a deleted Pod's containers stopped: delete it for good."""
        if not self._confirm_deletion:
            return
        try:
            self._core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
                ),
            )
        except ApiException as error:
            if error.status not in (404, 409):  # gone already, or a new Pod of the same name
                raise

    # Volumes the kubelet writes --------------------------------------------------------------------

    def _materialize_volumes(self, pod: Mapping[str, Any], folder: Path) -> None:
        """Write configMap, secret, downwardAPI and projected volumes into the Pod's folder."""
        for volume in pod["spec"].get("volumes") or []:
            kind = next((kind for kind in MATERIALIZED_KINDS if kind in volume), None)
            if kind is None:
                continue
            target = folder / "volumes" / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            sources = (volume["projected"].get("sources") or []) if kind == "projected" else [volume]
            for source in sources:
                for relative, data in self._volume_files(pod, source):
                    path = target / relative
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)

    def _volume_files(self, pod: Mapping[str, Any], source: Mapping[str, Any]) -> Iterator[tuple[str, bytes]]:
        meta = pod["metadata"]
        namespace = meta["namespace"]
        if "serviceAccountToken" in source:
            projection = source["serviceAccountToken"]
            yield projection["path"], self._token(pod, projection).encode()
        for kind in ("configMap", "secret"):
            if kind in source:
                yield from self._keyed_files(kind, source[kind], namespace)
        if "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                if "fieldRef" in item:
                    yield item["path"], downward_api_value(pod, item["fieldRef"]["fieldPath"]).encode()

    def _token(self, pod: Mapping[str, Any], projection: Mapping[str, Any]) -> str:
        """A token for the Pod's service account, bound to the Pod (the TokenRequest API)."""
        meta = pod["metadata"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [projection["audience"]] if projection.get("audience") else [],
                "expirationSeconds": int(projection.get("expirationSeconds") or 3600),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        account = pod["spec"].get("serviceAccountName") or "default"
        answer = self._core.create_namespaced_service_account_token(account, meta["namespace"], request)
        return str(answer.status.token)

    def _keyed_files(
        self, kind: str, reference: Mapping[str, Any], namespace: str
    ) -> Iterator[tuple[str, bytes]]:
        name = reference.get("name") or reference.get("secretName")
        data = self._data(kind, str(name), namespace)
        if data is None:
            if reference.get("optional"):
                return
            raise UnrunnableContainer("CreateContainerConfigError", f'{kind} "{name}" not found')
        for item in reference.get("items") or [{"key": key, "path": key} for key in data]:
            if item["key"] in data:
                yield item["path"], data[item["key"]]

    def _data(self, kind: str, name: str, namespace: str) -> dict[str, bytes] | None:
        """A ConfigMap's or Secret's data, decoded; None when it does not exist."""
        try:
            if kind == "configMap":
                found = self._core.read_namespaced_config_map(name, namespace)
                return {key: value.encode() for key, value in (found.data or {}).items()}
            found = self._core.read_namespaced_secret(name, namespace)
            return {key: base64.b64decode(value) for key, value in (found.data or {}).items()}
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _sources(self, namespace: str) -> Callable[[str, str], dict[str, str] | None]:
        """What `env` and `envFrom` read: a ConfigMap's or Secret's data as text."""

        def data_of(kind: str, name: str) -> dict[str, str] | None:
            found = self._data(kind, name, namespace)
            return (
                None
                if found is None
                else {key: value.decode("utf-8", "replace") for key, value in found.items()}
            )

        return data_of

    def _binds(
        self, pod: Mapping[str, Any], container: Mapping[str, Any], folder: Path
    ) -> list[tuple[Path, str]]:
        """What is bind-mounted rather than mapped: fixed-path mounts, and the kubelet's /etc/hosts."""
        binds = [
            (folder / "volumes" / mount["name"], mount["mountPath"])
            for mount in container.get("volumeMounts") or []
            if mount["mountPath"].startswith(BOUND_MOUNT_PREFIX)
        ]
        if binds and os.geteuid() != 0:
            raise UnrunnableContainer(
                "CreateContainerConfigError",
                f"mounting at {binds[0][1]} needs root (a private mount namespace); run the kubelet as root",
            )
        if self._hosts and os.geteuid() == 0:
            hosts = folder / "hosts"
            hosts.write_text(hosts_file(pod, self._hosts))
            binds.append((hosts, "/etc/hosts"))
        return binds

    def _service_env(self) -> dict[str, str]:
        if self._service is None:
            return {}
        host, port = self._service
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
        }


def hosts_file(pod: Mapping[str, Any], extra: Mapping[str, list[str]]) -> str:
    """The kubelet-managed /etc/hosts of a Pod: localhost, the Pod's host name, its hostAliases."""
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{LOCAL_IP}\t{pod['spec'].get('hostname') or pod['metadata']['name']}",
    ]
    for alias in pod["spec"].get("hostAliases") or []:
        lines.append(f"{alias['ip']}\t{' '.join(alias.get('hostnames') or [])}")
    lines.extend(f"{address}\t{' '.join(names)}" for address, names in extra.items())
    return "\n".join(lines) + "\n"


def _with_bound_mounts(argv: list[str], binds: list[tuple[Path, str]]) -> list[str]:
    """Run `argv` in a private mount namespace with each (local file or folder, path) bound in place."""
    if not binds:
        return argv
    script = (
        'while [ "$1" != -- ]; do mkdir -p "$2" && mount --bind "$1" "$2"; shift 2; done; shift; exec "$@"'
    )
    # A file is bound onto a file: only folders are created as mount points.
    script = script.replace('mkdir -p "$2" &&', '{ [ -f "$1" ] || mkdir -p "$2"; } &&')
    pairs = [str(part) for local, path in binds for part in (local, path)]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        *pairs,
        "--",
        *argv,
    ]


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


def _log_file(folder: Path, container: str, previous: bool = False) -> Path:
    """Where a container's output goes; its last instance's, once it restarted, with `previous`."""
    return folder / (f"{container}.previous.log" if previous else f"{container}.log")


def _message(started: Started, exit_code: int) -> str:
    message_file = started.log.with_suffix(".termination-log")
    return termination_message(
        started.container, message_file, started.log.read_text(errors="replace"), exit_code
    )


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


def _running_status(
    started: Started, restarts: int = 0, previous: list[Ended] | None = None
) -> dict[str, Any]:
    if started.process is None:
        state: dict[str, Any] = {"terminated": _start_error(started).terminated()}
    else:
        state = {"running": {"startedAt": started.started_at}}
    status = {
        **container_identity(started.container, started=True),
        "ready": started.process is not None,
        "started": started.process is not None,
        "restartCount": restarts,
        "state": state,
    }
    last = _last_state(started.container["name"], previous)
    if last:
        status["lastState"] = last
    return status


def _start_error(started: Started) -> Ended:
    """A container whose process could not be started, as containerd's CRI plugin reports it:
    terminated, reason StartError, exit code 128 (its `errorStartReason` and `errorStartExitCode`)."""
    return Ended(started, 128, "StartError", started.error, started.started_at)


def _exec_failure(why: str) -> str:
    """What `kubectl exec` says of a command that cannot be started, as runc words it."""
    return f"OCI runtime exec failed: exec failed: unable to start container process: {why}: unknown"


def _backing_off(results: list[Ended], restarts: int) -> dict[str, Any]:
    """Containers that ended and wait to be restarted (the kubelet's CrashLoopBackOff)."""
    statuses = []
    for result in results:
        name = result.started.container["name"]
        statuses.append(
            {
                **container_identity(result.started.container, started=True),
                "ready": False,
                "started": False,
                "restartCount": restarts,
                "state": {
                    "waiting": {"reason": "CrashLoopBackOff", "message": f"back-off restarting {name}"}
                },
                "lastState": {"terminated": result.terminated()},
            }
        )
    return {
        "phase": "Running",
        "conditions": _conditions(ready=False, reason="ContainersNotReady"),
        "containerStatuses": statuses,
    }


def _last_state(name: str, previous: list[Ended] | None) -> dict[str, Any] | None:
    for result in previous or []:
        if result.started.container["name"] == name:
            return {"terminated": result.terminated()}
    return None


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
