"""The local Job runner of the sandbox: the Job controller and the kubelet, for one machine.

It watches Jobs through the API, creates their Pods, runs each container's command as a local process
and reports back through the Pod's and the Job's status exactly as the Job controller and the kubelet
would: `startTime`, `active` / `succeeded` / `failed`, `Complete` / `Failed` conditions with their
reasons (`BackoffLimitExceeded`, `DeadlineExceeded`), and each container's termination state with its
exit code and termination message (`FallbackToLogsOnError` honoured).

What a container runtime would isolate is mapped instead:
- a container image maps to a local folder that stands for the image's files (e.g. `/app`);
- volume mounts map to local folders: a PersistentVolumeClaim to `<volumes>/<namespace>/<claim>`
  (with `subPath`), an emptyDir to a folder of the Pod's own;
- paths under a mount or an image folder, in the command, the arguments and environment values, are
  rewritten to the local folders, and `python` runs this interpreter;
- the termination message path maps to a file of the Pod's own.
Security contexts and resource limits are not enforced locally.
"""

import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import ownership, timestamps

logger = logging.getLogger(__name__)
TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
LogSink = Callable[[str, str, str], None]
# Every Pod here shares the host network: the address of the node, and of each Pod.
LOCAL_IP = "127.0.0.1"
# Volumes that live in the Pod's own folder: emptyDirs, and those the kubelet writes from the API.
POD_FOLDER_VOLUMES = ("emptyDir", "configMap", "secret", "downwardAPI", "projected")


class UnrunnableContainer(Exception):
    """The container cannot be run locally (unknown image, unsupported volume or variable source)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LocalImage:
    """What stands for a container image here: local folders for the image's own paths, and local
    executables for the programs its commands name (e.g. the operator image's `autoscene`)."""

    folders: Mapping[str, Path] = field(default_factory=dict)
    programs: Mapping[str, Path] = field(default_factory=dict)


def image_repository(image: str) -> str:
    """`registry/name:tag@digest` → `registry/name`, the part an image table is keyed by."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return without_digest[: len(without_digest) - len(last)] + last.split(":", 1)[0]


class PathMap:
    """Container paths → local paths, longest prefix first, for command lines and variables."""

    def __init__(self, mapping: Mapping[str, Path], programs: Mapping[str, Path] | None = None) -> None:
        self.programs = dict(programs or {})
        self._prefixes = sorted(
            ((prefix.rstrip("/"), local) for prefix, local in mapping.items()),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    def local(self, value: str) -> str:
        for prefix, local in self._prefixes:
            if value == prefix:
                return str(local)
            if value.startswith(prefix + "/"):
                return str(local / value[len(prefix) + 1 :])
        return value


@dataclass
class ContainerResult:
    exit_code: int
    reason: str
    message: str
    started_at: str
    finished_at: str


class LocalJobRunner:
    """Runs the Jobs of an API server as local processes until stopped."""

    def __init__(
        self,
        api: client.ApiClient,
        volumes: Path,
        images: Mapping[str, LocalImage],
        log_sink: LogSink | None = None,
        poll_seconds: float = 0.2,
    ) -> None:
        self._batch = client.BatchV1Api(api)
        self._core = client.CoreV1Api(api)
        self._volumes = volumes
        self._images = dict(images)
        self._log_sink = log_sink
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._seen: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._processes: set[subprocess.Popen[bytes]] = set()

    def start(self) -> None:
        thread = threading.Thread(target=self._watch_jobs, name="job-runner", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for process in list(self._processes):
            kill_group(process)
        for thread in self._threads:
            thread.join(timeout=10)

    def _watch_jobs(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = self._batch.list_job_for_all_namespaces().items
            except Exception as error:  # the API server may be starting or stopping
                logger.debug("listing jobs failed: %s", error)
                jobs = []
            for job in jobs:
                uid = job.metadata.uid
                if uid in self._seen or _is_finished(job):
                    continue
                self._seen.add(uid)
                body = self._core.api_client.sanitize_for_serialization(job)
                thread = threading.Thread(
                    target=self._run_job, args=(body,), name=f"job-{job.metadata.name}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
            self._stop.wait(self._poll_seconds)

    # The Job controller ----------------------------------------------------------------------------

    def _run_job(self, job: dict[str, Any]) -> None:
        self._run_to_the_end(job)
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        # The TTL controller: a finished Job goes, and its Pods with it (garbage collection).
        if ttl is not None and not self._stop.wait(float(ttl)):
            try:
                self._batch.delete_namespaced_job(
                    job["metadata"]["name"], job["metadata"]["namespace"], propagation_policy="Background"
                )
            except ApiException as error:
                if error.status != 404:
                    raise

    def _run_to_the_end(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        namespace, name = meta["namespace"], meta["name"]
        started = time.monotonic()
        start_time = timestamps.render(timestamps.now())
        self._patch_job(namespace, name, {"startTime": start_time, "active": 1})
        deadline = spec.get("activeDeadlineSeconds")
        backoff_limit = int(spec.get("backoffLimit", 6))
        failures = 0
        while not self._stop.is_set():
            remaining = None if deadline is None else deadline - (time.monotonic() - started)
            outcome = self._run_pod(job, remaining)
            if outcome == "Succeeded":
                now = timestamps.render(timestamps.now())
                self._patch_job(
                    namespace,
                    name,
                    {
                        "active": 0,
                        "succeeded": 1,
                        "failed": failures,
                        "completionTime": now,
                        # Since Kubernetes 1.31 the Job controller first notes SuccessCriteriaMet.
                        "conditions": [
                            _condition(
                                "SuccessCriteriaMet",
                                "CompletionsReached",
                                "Reached expected number of succeeded pods",
                                now,
                            ),
                            _condition(
                                "Complete",
                                "CompletionsReached",
                                "Reached expected number of succeeded pods",
                                now,
                            ),
                        ],
                    },
                )
                return
            failures += 1
            now = timestamps.render(timestamps.now())
            if outcome == "DeadlineExceeded":
                message = f"Job was active longer than specified deadline ({deadline}s)"
                self._fail_job(namespace, name, failures, "DeadlineExceeded", message, now)
                return
            if failures > backoff_limit:
                self._fail_job(
                    namespace,
                    name,
                    failures,
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                )
                return
            self._patch_job(namespace, name, {"failed": failures, "active": 1})

    def _fail_job(
        self, namespace: str, name: str, failures: int, reason: str, message: str, now: str
    ) -> None:
        self._patch_job(
            namespace,
            name,
            {
                "active": 0,
                "failed": failures,
                # Since Kubernetes 1.31 the Job controller first notes FailureTarget.
                "conditions": [
                    _condition("FailureTarget", reason, message, now),
                    _condition("Failed", reason, message, now),
                ],
            },
        )

    def _patch_job(self, namespace: str, name: str, job_status: dict[str, Any]) -> None:
        try:
            self._batch.patch_namespaced_job_status(name, namespace, {"status": job_status})
        except ApiException as error:
            if error.status != 404:  # a Job deleted while it runs simply goes away
                raise

    # The kubelet -----------------------------------------------------------------------------------

    def _run_pod(self, job: dict[str, Any], remaining: float | None) -> str:
        """Run one Pod of the Job; its phase ("Succeeded", "Failed") or "DeadlineExceeded"."""
        pod = self._core.create_namespaced_pod(job["metadata"]["namespace"], _pod_for(job))
        pod_body = self._core.api_client.sanitize_for_serialization(pod)
        meta = pod_body["metadata"]
        pod_dir = Path(tempfile.mkdtemp(prefix=f"{meta['name']}-"))
        deadline = None if remaining is None else time.monotonic() + max(remaining, 0.0)
        try:
            init_statuses: list[dict[str, Any]] = []
            for container in pod_body["spec"].get("initContainers") or []:
                result = self._run_container(pod_body, container, pod_dir, deadline)
                init_statuses.append(_container_status(container, result))
                self._patch_pod(meta, "Pending", init_statuses, [])
                if result.exit_code != 0:
                    return self._finish_pod(meta, init_statuses, [], result)
            containers = pod_body["spec"]["containers"]
            now = timestamps.render(timestamps.now())
            running = [_running_status(container, now) for container in containers]
            self._patch_pod(meta, "Running", init_statuses, running)
            # Containers of one Pod run side by side; the Pod ends when all have ended.
            results = self._run_side_by_side(pod_body, containers, pod_dir, deadline)
            statuses = [_container_status(c, r) for c, r in zip(containers, results, strict=True)]
            failed = next((result for result in results if result.exit_code != 0), None)
            return self._finish_pod(meta, init_statuses, statuses, failed)
        finally:
            shutil.rmtree(pod_dir, ignore_errors=True)

    def _finish_pod(
        self,
        meta: dict[str, Any],
        init_statuses: list[dict[str, Any]],
        statuses: list[dict[str, Any]],
        failed: ContainerResult | None,
    ) -> str:
        phase = "Succeeded" if failed is None else "Failed"
        self._patch_pod(meta, phase, init_statuses, statuses)
        if failed is not None and failed.reason == "DeadlineExceeded":
            return "DeadlineExceeded"
        return phase

    def _run_side_by_side(
        self, pod: dict[str, Any], containers: Sequence[dict[str, Any]], pod_dir: Path, deadline: float | None
    ) -> list[ContainerResult]:
        results: list[ContainerResult | None] = [None] * len(containers)

        def run(index: int) -> None:
            results[index] = self._run_container(pod, containers[index], pod_dir, deadline)

        threads = [threading.Thread(target=run, args=(index,)) for index in range(len(containers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [result for result in results if result is not None]

    def _run_container(
        self, pod: dict[str, Any], container: dict[str, Any], pod_dir: Path, deadline: float | None
    ) -> ContainerResult:
        started_at = timestamps.render(timestamps.now())
        message_file = pod_dir / f"{container['name']}.termination-log"
        log_file = pod_dir / f"{container['name']}.log"
        try:
            argv, env, cwd = self._local_command(pod, container, pod_dir, message_file)
        except UnrunnableContainer as error:
            return ContainerResult(128, error.reason, str(error), started_at, started_at)
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._processes.add(process)
            try:
                exit_code, reason = self._wait(process, deadline)
            finally:
                self._processes.discard(process)
        log_text = log_file.read_text(errors="replace")
        if self._log_sink is not None:
            self._log_sink(pod["metadata"]["namespace"], pod["metadata"]["name"], log_text)
        message = termination_message(container, message_file, log_text, exit_code)
        if reason == "DeadlineExceeded":
            message = message or "the container was stopped at the job's deadline"
        return ContainerResult(exit_code, reason, message, started_at, timestamps.render(timestamps.now()))

    def _wait(self, process: subprocess.Popen[bytes], deadline: float | None) -> tuple[int, str]:
        while True:
            try:
                exit_code = process.wait(timeout=0.1)
                return exit_code, "Completed" if exit_code == 0 else "Error"
            except subprocess.TimeoutExpired:
                pass
            if self._stop.is_set():
                kill_group(process)
                return process.wait(), "Error"
            if deadline is not None and time.monotonic() >= deadline:
                kill_group(process)
                process.wait()
                return 137, "DeadlineExceeded"

    def _local_command(
        self, pod: dict[str, Any], container: dict[str, Any], pod_dir: Path, message_file: Path
    ) -> tuple[list[str], dict[str, str], str]:
        paths = container_paths(pod, container, self._volumes, self._images, pod_dir, message_file)
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if not command:
            raise UnrunnableContainer("StartError", f'container "{container["name"]}" has no command to run')
        env, cwd = container_environment(container, paths, pod_dir)
        return local_argv(command, paths), env, cwd

    def _patch_pod(
        self,
        meta: dict[str, Any],
        phase: str,
        init_statuses: list[dict[str, Any]],
        statuses: list[dict[str, Any]],
    ) -> None:
        pod_status: dict[str, Any] = {
            "phase": phase,
            "initContainerStatuses": init_statuses,
            "containerStatuses": statuses,
        }
        if phase != "Pending":
            pod_status["startTime"] = pod_status.get("startTime") or timestamps.render(timestamps.now())
        try:
            self._core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": pod_status})
        except ApiException as error:
            if error.status != 404:
                raise


def container_paths(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    volumes: Path,
    images: Mapping[str, LocalImage],
    pod_dir: Path,
    message_file: Path | None = None,
) -> PathMap:
    """The container's view of the file system, as local paths: its image's folders and its mounts."""
    image = images.get(image_repository(container["image"]))
    if image is None:
        known = ", ".join(sorted(images)) or "none"
        raise UnrunnableContainer(
            "ErrImagePull", f'image "{container["image"]}" has no local stand-in (known: {known})'
        )
    mapping: dict[str, Path] = dict(image.folders)
    declared = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
    namespace = pod["metadata"]["namespace"]
    for mount in container.get("volumeMounts") or []:
        volume = declared.get(mount["name"])
        if volume is None:
            raise UnrunnableContainer(
                "CreateContainerConfigError", f'volume "{mount["name"]}" is not declared'
            )
        if "persistentVolumeClaim" in volume:
            root = volumes / namespace / volume["persistentVolumeClaim"]["claimName"]
        elif any(kind in volume for kind in POD_FOLDER_VOLUMES):
            root = pod_dir / "volumes" / mount["name"]
        else:
            raise UnrunnableContainer(
                "CreateContainerConfigError",
                f'volume "{mount["name"]}" is of a kind the local runner cannot mount',
            )
        local = root / mount["subPath"] if mount.get("subPath") else root
        local.mkdir(parents=True, exist_ok=True)  # as the kubelet does for a missing subPath
        mapping[mount["mountPath"]] = local
    if message_file is not None:
        mapping[container.get("terminationMessagePath", "/dev/termination-log")] = message_file
    return PathMap(mapping, image.programs)


def container_environment(
    container: Mapping[str, Any],
    paths: PathMap,
    folder: Path,
    pod: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], str]:
    """The variables and working folder of a container's process, its paths mapped to local ones.

    `extra` comes first (the kubelet's service variables), then the container's own `env`, whose
    `valueFrom.fieldRef` is read from `pod` (the downward API); other sources are not supported here.
    """
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra or {})
    for variable in container.get("env") or []:
        source = variable.get("valueFrom") if "value" not in variable else None
        if source and "fieldRef" in source and pod is not None:
            env[variable["name"]] = downward_api_value(pod, source["fieldRef"]["fieldPath"])
            continue
        if source:
            raise UnrunnableContainer(
                "CreateContainerConfigError",
                f'variable "{variable["name"]}" uses valueFrom, not supported locally',
            )
        env[variable["name"]] = paths.local(str(variable.get("value", "")))
    working_dir = container.get("workingDir")
    return env, paths.local(working_dir) if working_dir else str(home)


def downward_api_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API field of the Pod (the fields `fieldRef` accepts for env and volumes)."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": LOCAL_IP,
        "status.podIP": LOCAL_IP,
        "status.hostIPs": LOCAL_IP,
        "status.podIPs": LOCAL_IP,
    }
    if path not in values:
        raise UnrunnableContainer("CreateContainerConfigError", f'field "{path}" is not supported locally')
    return str(values[path])


def local_argv(command: list[str], paths: PathMap) -> list[str]:
    """A container's command line, runnable here: executables and paths mapped to local ones."""
    return [_local_executable(command[0], paths)] + [paths.local(arg) for arg in command[1:]]


def _pod_for(job: dict[str, Any]) -> dict[str, Any]:
    """The Pod the Job controller makes from the Job's template."""
    meta, template = job["metadata"], job["spec"]["template"]
    pod_labels = {
        **(template.get("metadata") or {}).get("labels", {}),
        "job-name": meta["name"],
        "batch.kubernetes.io/job-name": meta["name"],
        "controller-uid": meta["uid"],
        "batch.kubernetes.io/controller-uid": meta["uid"],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}-{secrets.token_hex(3)[:5]}",
            "namespace": meta["namespace"],
            "labels": pod_labels,
            "ownerReferences": ownership.owned_by(job),
        },
        "spec": {**template["spec"], "nodeName": "localhost"},
    }


def _local_executable(program: str, paths: PathMap) -> str:
    if program in ("python", "python3", "/usr/local/bin/python", "/usr/bin/python3"):
        return sys.executable
    if program in paths.programs:
        return str(paths.programs[program])
    mapped = paths.local(program)
    if mapped != program:
        return mapped
    found = shutil.which(program)
    if found is None:
        raise UnrunnableContainer("StartError", f'executable "{program}" is not available locally')
    return found


def termination_message(
    container: Mapping[str, Any], message_file: Path, log_text: str, exit_code: int
) -> str:
    """What the container wrote to its terminationMessagePath (4 KiB at most), else, when it failed
    under `FallbackToLogsOnError`, the end of its log (80 lines, 2 KiB), as the kubelet does."""
    message = (
        message_file.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
        if message_file.exists()
        else ""
    )
    if (
        not message.strip()
        and exit_code != 0
        and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
    ):
        tail = "\n".join(log_text.splitlines()[-FALLBACK_LOG_LINES:])
        message = tail.encode()[-FALLBACK_LOG_BYTES:].decode(errors="replace")
    return message


def _container_status(container: Mapping[str, Any], result: ContainerResult) -> dict[str, Any]:
    return {
        **container_identity(container),
        "ready": False,
        "restartCount": 0,
        "state": {
            "terminated": {
                "exitCode": result.exit_code,
                "reason": result.reason,
                "message": result.message,
                "startedAt": result.started_at,
                "finishedAt": result.finished_at,
            }
        },
    }


def _running_status(container: Mapping[str, Any], started_at: str) -> dict[str, Any]:
    return {
        **container_identity(container),
        "ready": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": started_at}},
    }


def container_identity(container: Mapping[str, Any], started: bool = True) -> dict[str, str]:
    """The fields a container status always carries; the image ID names the local stand-in once it ran."""
    image_id = f"local://{container['image']}" if started else ""
    return {"name": container["name"], "image": container["image"], "imageID": image_id}


def _condition(kind: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def _is_finished(job: Any) -> bool:
    conditions = (job.status.conditions if job.status else None) or []
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
