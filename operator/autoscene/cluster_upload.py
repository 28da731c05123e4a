"""Uploads to a Record on a cluster, through the Kubernetes API alone (no node access, no extra port).

A short-lived uploader Pod mounts the Record's volume. The files go to it as one tar stream over the
exec API, the way `kubectl cp` sends them, hashed locally while they are read; `tar` extracts them
into a staging folder on the volume, `sha256sum` there proves what arrived, and only then are they
moved into `files/` (a rename within one file system: a Trigger's Job never sees half a file) and
registered in the Record's status. The Pod is deleted when the upload ends, however it ends; it is
owned by the Record, and ends by itself after `LIFETIME_SECONDS`, for when even that fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from websocket import WebSocketException

from . import jobs, kube, labels, naming, ownership, upload
from .upload import CHUNK, UploadedFile, UploadError

logger = logging.getLogger(__name__)

UPLOADER_IMAGE = "busybox:1.36.1"  # has sh, tar, sha256sum, mv and sleep; nothing else is needed
CONTAINER = "uploader"
VOLUME_ROOT = "/volume"
FILES_FOLDER = f"{VOLUME_ROOT}/{jobs.FILES_SUBPATH}"
STAGING_ROOT = f"{VOLUME_ROOT}/.autoscene-uploads"
ROLE_LABEL = labels.ROLE
ROLE = "uploader"
POD_START_TIMEOUT = 120.0
LIFETIME_SECONDS = 6 * 3600
# How long the cluster may stay silent while a command reads its input, and how long a command may take
# once it has it (plus the time to read the files at `CHECK_RATE`, for the checksums).
QUIET_TIMEOUT = 300.0
CHECK_RATE = 10 << 20
POLL_SECONDS = 0.2
# Command lines carry the files' paths; a few hundred kilobytes stays far below every limit on the way.
COMMAND_BYTES = 128 * 1024
# Waiting reasons no amount of waiting cures.
HOPELESS_REASONS = ("InvalidImageName", "CreateContainerConfigError", "ErrImageNeverPull")

RECEIVE_SCRIPT = 'mkdir -p "$1" && exec tar -x -o -f - -C "$1"'
CHECKSUM_SCRIPT = (
    'cd "$1" || exit; i=0; while [ "$i" -lt "$2" ]; do sha256sum < "$i" || exit; i=$((i + 1)); done'
)
# Pairs of (staging entry, path in the record) follow the two folders.
PLACE_SCRIPT = """staging=$1 files=$2
shift 2
while [ "$#" -gt 1 ]; do
  target="$files/$2"
  if [ -d "$target" ]; then echo "$2: a folder of that name is in the way" >&2; exit 1; fi
  mkdir -p "${target%/*}" && mv -f "$staging/$1" "$target" || exit
  shift 2
done"""
CLEANUP_SCRIPT = 'rm -rf "$1"; rmdir "$2" 2>/dev/null; exit 0'


def upload_via_exec(
    namespace: str,
    record: str,
    planned: list[tuple[Path, str]],
    progress: Callable[[int], None],
    *,
    start_timeout: float = POD_START_TIMEOUT,
) -> list[UploadedFile]:
    """Copy the planned files into the Record's volume through an uploader Pod, then register them."""
    owner, claim = upload.ready_record(namespace, record)
    with volume_shell(namespace, owner, claim, start_timeout) as (shell, staging):
        try:
            uploaded = transfer(shell, staging, planned, progress)
        finally:  # whatever arrived and was not moved into place goes
            remove_staging(shell, staging)
    upload.register(namespace, record, uploaded)
    return uploaded


@contextlib.contextmanager
def volume_shell(
    namespace: str, record: Mapping[str, Any], claim: str, start_timeout: float = POD_START_TIMEOUT
) -> Iterator[tuple[PodShell, str]]:
    """A short-lived Pod mounting the Record's volume, and its staging folder, for commands sent to it
    through the exec API; the Pod is deleted when the block ends."""
    pod = uploader_pod(record, claim, uploader_name(record["metadata"]["name"]))
    name = pod["metadata"]["name"]
    core = kube.core()
    try:
        core.create_namespaced_pod(namespace, pod)
    except ApiException as error:
        raise UploadError(f"cannot create the uploader pod: {api_message(error)}") from error
    # `stream` swaps its client's transport while it connects: a client of its own keeps others unaffected.
    api = client.ApiClient(kube.api_client().configuration)
    try:
        wait_until_running(core, namespace, name, start_timeout)
        yield PodShell(api, namespace, name), staging_folder(name)
    finally:
        api.close()
        delete_pod(core, namespace, name)


def download_via_exec(namespace: str, record: str, folder: str, target: Path) -> list[UploadedFile]:
    """Copy `folder` of the Record's volume (e.g. `outputs/<invocation>`) into `target` through the API
    alone: one tar stream out of a short-lived Pod, then each file's sha256, computed in the Pod where
    the bytes are, checked against the bytes received. UploadError on any mismatch."""
    owner, claim = upload.ready_record(namespace, record)
    source = f"{VOLUME_ROOT}/{folder}"
    with volume_shell(namespace, owner, claim) as (shell, _):
        archive = shell.run(f"reading {folder}", ["tar", "-c", "-f", "-", "-C", source, "."])
        sums = shell.run(
            f"hashing {folder}", ["sh", "-c", 'cd "$1" && find . -type f -exec sha256sum {} +', "sh", source]
        )
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")  # no absolute paths, links out or devices
    expected = {
        line[66:].removeprefix("./"): line[:64] for line in sums.decode().splitlines() if len(line) > 66
    }
    received = []
    for path, sha256 in sorted(expected.items()):
        local = target / path
        actual = hashlib.sha256(local.read_bytes()).hexdigest() if local.is_file() else ""
        if actual != sha256:
            raise UploadError(f"{path}: received bytes do not match the sha256 computed in the pod")
        received.append(UploadedFile(path, local.stat().st_size, sha256))
    return received


def read_via_exec(namespace: str, record: str, path: str) -> bytes | None:
    """The bytes of `path` in the Record's volume (e.g. `logs/<invocation>.log`), through the API alone:
    `cat` in a short-lived Pod mounting the volume. None when there is no such file."""
    owner, claim = upload.ready_record(namespace, record)
    with volume_shell(namespace, owner, claim) as (shell, _):
        found = shell.run(
            f"reading {path}",
            ["sh", "-c", 'if [ -f "$1" ]; then echo yes; cat "$1"; fi', "sh", f"{VOLUME_ROOT}/{path}"],
        )
    present, _, content = found.partition(b"\n")
    return content if present == b"yes" else None


# The uploader Pod ------------------------------------------------------------------------------------


def uploader_name(record: str) -> str:
    """A fresh name per upload, readable in `kubectl get pods`."""
    return naming.fresh_name(record, "upload")


def staging_folder(pod_name: str) -> str:
    """Where the files arrive, on the same volume as `files/`, so that moving them is a rename."""
    return f"{STAGING_ROOT}/{pod_name}"


def uploader_pod(record: Mapping[str, Any], claim: str, name: str) -> dict[str, Any]:
    """A Pod that mounts the Record's volume and idles, for commands sent to it through exec."""
    meta = record["metadata"]
    pod_labels = {labels.MANAGED_BY: labels.MANAGER, ROLE_LABEL: ROLE}
    if labels.is_label_value(meta["name"]):
        pod_labels[labels.RECORD] = meta["name"]
    container = {
        "name": CONTAINER,
        "image": UPLOADER_IMAGE,
        "command": ["sleep", str(LIFETIME_SECONDS)],
        "volumeMounts": [{"name": "record", "mountPath": VOLUME_ROOT}],
        "securityContext": jobs.restricted_container_context(),
        # `tar` and `sha256sum` stream: little memory, whatever the files' size.
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": pod_labels,
            "ownerReferences": ownership.owned_by(record, block_owner_deletion=False),
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "activeDeadlineSeconds": LIFETIME_SECONDS,
            "terminationGracePeriodSeconds": 1,  # `sleep` ignores SIGTERM as PID 1: no use waiting
            "securityContext": jobs.restricted_pod_context(),
            "containers": [container],
            "volumes": [{"name": "record", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def wait_until_running(core: client.CoreV1Api, namespace: str, name: str, timeout: float) -> None:
    """Return once the uploader runs; a clear error, saying why from its status, when it does not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pod = kube.sanitized(core.read_namespaced_pod(name, namespace))
        except ApiException as error:
            raise UploadError(f'the uploader pod "{name}" cannot be read: {api_message(error)}') from error
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Running" and _container_running(pod):
            return
        if phase in ("Succeeded", "Failed"):
            raise UploadError(f'the uploader pod "{name}" ended before the upload: {why_not_running(pod)}')
        if _hopeless(pod):
            raise UploadError(f'the uploader pod "{name}" cannot start: {why_not_running(pod)}')
        if time.monotonic() >= deadline:
            why = why_not_running(pod, _warnings_about(core, pod))
            raise UploadError(f'the uploader pod "{name}" did not start within {timeout:.0f} s: {why}')
        time.sleep(POLL_SECONDS)


def why_not_running(pod: Mapping[str, Any], warnings: list[str] | None = None) -> str:
    """What a Pod's status (and its warning Events) say about why it is not running."""
    status = pod.get("status") or {}
    reasons = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reasons.append(_sentence("not scheduled", condition.get("reason"), condition.get("message")))
    if status.get("reason") or status.get("message"):
        reasons.append(
            _sentence(f"pod {status.get('phase', '')}".strip(), status.get("reason"), status.get("message"))
        )
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = container.get("state") or {}
        if "waiting" in state:
            waiting = state["waiting"]
            reasons.append(
                _sentence(
                    f'container "{container["name"]}" waits', waiting.get("reason"), waiting.get("message")
                )
            )
        elif "terminated" in state:
            ended = state["terminated"]
            what = f'container "{container["name"]}" ended with exit code {ended.get("exitCode")}'
            reasons.append(_sentence(what, ended.get("reason"), ended.get("message")))
    reasons += warnings or []
    return "; ".join(reasons) or f"it is still {status.get('phase') or 'Pending'}"


def delete_pod(core: client.CoreV1Api, namespace: str, name: str) -> None:
    """Delete the uploader; failing that, its owner and its deadline will see to it."""
    try:
        core.delete_namespaced_pod(name, namespace)
    except ApiException as error:
        if error.status != 404:
            logger.warning('could not delete the uploader pod "%s": %s', name, api_message(error))
    except Exception as error:  # cleanup must not hide why the upload ended
        logger.warning('could not delete the uploader pod "%s": %s', name, error)


def _container_running(pod: Mapping[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("name") == CONTAINER and "running" in (s.get("state") or {}) for s in statuses)


def _hopeless(pod: Mapping[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    waiting = [((s.get("state") or {}).get("waiting") or {}).get("reason") for s in statuses]
    return any(reason in HOPELESS_REASONS for reason in waiting)


def _warnings_about(core: client.CoreV1Api, pod: Mapping[str, Any]) -> list[str]:
    """The Pod's last warning Events (failed mounts, image pulls…), when the user may read Events."""
    meta = pod["metadata"]
    try:
        events = core.list_namespaced_event(
            meta["namespace"], field_selector=f"involvedObject.name={meta['name']}"
        ).items
    except ApiException:
        return []
    warnings = [
        _sentence("event", event.reason, event.message)
        for event in events
        if event.type == "Warning" and event.involved_object.uid in (None, meta.get("uid"))
    ]
    return warnings[-3:]


def _sentence(what: str, reason: str | None, message: str | None) -> str:
    return ": ".join(part for part in (what, reason, (message or "").strip()) if part)


# Commands in the Pod ---------------------------------------------------------------------------------


class CommandFailed(UploadError):
    """A command in the uploader Pod failed; its message says which, how, and what it printed."""


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    message: str
    stdout: bytes
    stderr: bytes


class PodShell:
    """Runs commands in the uploader's container through the exec API (websocket channels)."""

    def __init__(self, api: client.ApiClient, namespace: str, pod: str) -> None:
        self._core = client.CoreV1Api(api)
        self.namespace, self.pod = namespace, pod

    def run(
        self,
        what: str,
        command: list[str],
        send: Callable[[io.RawIOBase], None] | None = None,
        timeout: float = QUIET_TIMEOUT,
    ) -> bytes:
        """Run `command` (doing `what`), `send` writing its stdin; its stdout, or CommandFailed.

        `timeout` bounds the wait for the command to end once its input is sent.
        """
        connection = self._connect(command, stdin=send is not None)
        try:
            if send is not None:
                with ChannelWriter(connection) as writer:
                    try:
                        send(writer)
                    except CommandEnded:
                        pass  # the command stopped reading: its exit status says why
            outcome = _outcome(connection, timeout)
        except WebSocketException as error:
            raise UploadError(f"{what}: the connection to the uploader pod broke ({error})") from error
        finally:
            connection.close()
        if outcome.exit_code != 0:
            raise CommandFailed(_failure(what, outcome))
        return outcome.stdout

    def _connect(self, command: list[str], stdin: bool) -> Any:
        try:
            connection = stream(
                self._core.connect_get_namespaced_pod_exec,
                self.pod,
                self.namespace,
                container=CONTAINER,
                command=command,
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
                binary=True,
                _preload_content=False,
            )
        except ApiException as error:
            why = handshake_message(str(error.reason))
            raise UploadError(f'cannot run commands in the uploader pod "{self.pod}": {why}') from error
        connection.sock.settimeout(QUIET_TIMEOUT)  # a send the pod never takes in fails, not hangs
        return connection


class CommandEnded(Exception):
    """The command's connection closed while its input was being sent."""


class ChannelWriter(io.RawIOBase):
    """A write-only file that sends what is written to the command's stdin, a chunk per message.

    Incoming messages are read between chunks, so that a command that ends early is noticed at once.
    Closing it ends stdin (with the v5 protocol; with v4, `tar` stops at the archive's end anyway).
    """

    def __init__(self, connection: Any) -> None:
        super().__init__()
        self._connection = connection
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self._send()
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._buffer:
                self._send()
            self._connection.close_channel(0)
        except (CommandEnded, OSError, WebSocketException):
            pass  # already over: the exit status tells
        finally:
            super().close()

    def _send(self) -> None:
        if not self._connection.is_open():
            raise CommandEnded
        try:
            self._connection.write_stdin(bytes(self._buffer))
        except (OSError, WebSocketException) as error:
            raise CommandEnded from error
        self._buffer.clear()
        self._connection.update(timeout=0)


def _outcome(connection: Any, timeout: float) -> Outcome:
    """Read until the command's connection closes; its exit code, message and output."""
    deadline = time.monotonic() + timeout
    while connection.is_open():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UploadError(f"the uploader pod did not finish a command within {timeout:.0f} s")
        connection.update(timeout=min(remaining, 1.0))
    exit_code, message = exit_status(connection.read_channel(3))
    return Outcome(exit_code, message, connection.read_channel(1), connection.read_channel(2))


def exit_status(status_text: bytes | str) -> tuple[int, str]:
    """The exit code and message in a channel-3 `Status`; -1 when there is none."""
    if not status_text:
        return -1, "the connection ended without an exit status"
    try:
        status = json.loads(status_text)
    except ValueError:
        return -1, f"an unreadable exit status: {status_text!r}"
    if status.get("status") == "Success":
        return 0, ""
    message = status.get("message") or "the command failed"
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause["message"]), message
    return -1, message


def _failure(what: str, outcome: Outcome) -> str:
    said = (outcome.stderr or outcome.stdout).decode(errors="replace").strip()
    how = f"exit code {outcome.exit_code}" if outcome.exit_code >= 0 else outcome.message
    return f"{what} in the uploader pod failed ({how})" + (f": {said}" if said else "")


def handshake_message(reason: str) -> str:
    """The API's message in a refused websocket upgrade ("Handshake status 400 … -+-+- body")."""
    parts = reason.split(" -+-+- ")
    body = parts[-1].removeprefix("b'").removesuffix("'") if len(parts) > 1 else ""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return parts[0]


def api_message(error: ApiException) -> str:
    """The message of the API's `Status` answer, else the HTTP reason."""
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


# The transfer ------------------------------------------------------------------------------------------


def transfer(
    shell: PodShell, staging: str, planned: list[tuple[Path, str]], progress: Callable[[int], None]
) -> list[UploadedFile]:
    """Send, verify and place the files; what was placed, with the sizes and hashes computed on the way."""
    sent: list[UploadedFile] = []
    shell.run(
        "receiving the files",
        receive_command(staging),
        lambda writer: write_archive(writer, planned, progress, sent),
    )
    if len(sent) != len(planned):
        raise UploadError(f"the uploader pod stopped receiving after {len(sent)} of {len(planned)} files")
    check_time = QUIET_TIMEOUT + sum(file.size for file in sent) / CHECK_RATE
    checksums = shell.run("checking the files", checksum_command(staging, len(sent)), timeout=check_time)
    arrived = parse_checksums(checksums, len(sent))
    mismatched = [
        f"{file.path} (sent {file.sha256}, the volume holds {found})"
        for file, found in zip(sent, arrived, strict=True)
        if file.sha256 != found
    ]
    if mismatched:
        raise UploadError(
            f"checksum mismatch after the transfer, nothing was registered: {'; '.join(mismatched)}"
        )
    for command in place_commands(staging, [file.path for file in sent]):
        shell.run("moving the files into place", command)
    return sent


def remove_staging(shell: PodShell, staging: str) -> None:
    try:
        shell.run("removing the staging folder", cleanup_command(staging))
    except UploadError as error:
        logger.warning("%s", error)


def write_archive(
    writer: io.RawIOBase,
    planned: list[tuple[Path, str]],
    progress: Callable[[int], None],
    sent: list[UploadedFile],
) -> None:
    """Write the files as a tar stream, entry `i` for the i-th file, hashing them as they are read.

    Each file whose bytes have all been written is appended to `sent`. Entries are named by number: no
    name of the user's reaches `tar`, whatever its characters or length; the paths travel as arguments
    of the command that moves the files into place.
    """
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.GNU_FORMAT) as archive:
        for index, (source, path) in enumerate(planned):
            with source.open("rb") as file:
                size = os.fstat(file.fileno()).st_size
                reader = HashingReader(file, progress)
                try:
                    archive.addfile(archive_entry(str(index), size, os.fstat(file.fileno()).st_mtime), reader)
                except OSError as error:
                    if "unexpected end of data" in str(error):
                        raise UploadError(f"{source} shrank while it was being uploaded") from error
                    raise
                reader.report_the_rest()
            sent.append(UploadedFile(path, size, reader.hexdigest()))


def archive_entry(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.size = size
    entry.mtime = int(mtime)
    entry.mode = 0o644
    return entry


class HashingReader:
    """Reads a file for `tarfile`, hashing what it reads and reporting progress once per CHUNK."""

    def __init__(self, file: BinaryIO, progress: Callable[[int], None]) -> None:
        self._file = file
        self._progress = progress
        self._digest = hashlib.sha256()
        self._unreported = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._digest.update(data)
        self._unreported += len(data)
        if self._unreported >= CHUNK:
            self.report_the_rest()
        return data

    def report_the_rest(self) -> None:
        if self._unreported:
            self._progress(self._unreported)
            self._unreported = 0

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def receive_command(staging: str) -> list[str]:
    return ["sh", "-c", RECEIVE_SCRIPT, "sh", staging]


def checksum_command(staging: str, count: int) -> list[str]:
    """Each entry's sha256 on a line of its own, read from stdin so that no file name is printed."""
    return ["sh", "-c", CHECKSUM_SCRIPT, "sh", staging, str(count)]


def parse_checksums(stdout: bytes, count: int) -> list[str]:
    lines = stdout.decode(errors="replace").splitlines()
    digests = [line.split()[0].lstrip("\\").lower() for line in lines if line.strip()]
    if len(digests) != count:
        raise UploadError(
            f"checking the files in the uploader pod gave {len(digests)} checksums, not {count}"
        )
    return digests


def place_commands(staging: str, paths: list[str]) -> Iterator[list[str]]:
    """Commands moving entry `i` to `files/<paths[i]>`, in batches short enough for a command line."""
    batch: list[str] = []
    size = 0
    for index, path in enumerate(paths):
        pair = [str(index), path]
        if batch and size + len(path.encode()) > COMMAND_BYTES:
            yield ["sh", "-c", PLACE_SCRIPT, "sh", staging, FILES_FOLDER, *batch]
            batch, size = [], 0
        batch += pair
        size += len(path.encode()) + 8
    if batch:
        yield ["sh", "-c", PLACE_SCRIPT, "sh", staging, FILES_FOLDER, *batch]


def cleanup_command(staging: str) -> list[str]:
    return ["sh", "-c", CLEANUP_SCRIPT, "sh", staging, STAGING_ROOT]
