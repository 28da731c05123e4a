"""Each run's log kept on its Record's volume, at `logs/<invocation>.log` (its last `KEPT_BYTES`), so
that `autoscene logs` prints it after the Job and its Pods are gone, without weighing on etcd.

The operator reads a run's log once, when its Job has finished (`invocations.sync_with_job`), and
queues it here. A worker thread sends the queued logs of one volume together, as one tar stream over
the exec API, into a keeper Pod that mounts the volume (the uploader Pod of `cluster_upload`: busybox,
restricted, owned by the Record). A keeper Pod serves many flushes, and is deleted once idle. Keeping
a log never holds up a run: a log that cannot be kept is dropped with a warning.
"""

import contextlib
import io
import logging
import queue
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import cluster_upload, kube

logger = logging.getLogger(__name__)

KEPT_BYTES = 1 << 20
LOGS_SUBPATH = "logs"
FLUSH_SECONDS = 1.0
IDLE_SECONDS = 30.0
RECEIVE_LOGS = 'mkdir -p "$1" && exec tar -x -o -f - -C "$1"'


def log_path(invocation: str) -> str:
    """Where a run's log is kept, relative to its Record's volume."""
    return f"{LOGS_SUBPATH}/{invocation}.log"


def bounded(chunks: Iterable[bytes], limit: int = KEPT_BYTES) -> bytes:
    """The last `limit` bytes of a stream, holding no more than about twice that at any time; a cut
    line at the start is dropped, and a note says how much was left out."""
    kept = bytearray()
    dropped = 0
    for chunk in chunks:
        kept += chunk
        if len(kept) > 2 * limit:
            dropped += len(kept) - limit
            del kept[: len(kept) - limit]
    if len(kept) > limit:
        dropped += len(kept) - limit
        del kept[: len(kept) - limit]
    if not dropped:
        return bytes(kept)
    start = kept.find(b"\n") + 1
    dropped += start
    return f"[the first {dropped} bytes of the log were not kept]\n".encode() + bytes(kept[start:])


@dataclass(frozen=True)
class KeptLog:
    namespace: str
    record: str
    claim: str
    invocation: str
    text: bytes


@dataclass
class _Keeper:
    """A keeper Pod in use, and when it was last used."""

    shell: cluster_upload.PodShell
    close: Callable[[], None]
    used: float = field(default_factory=time.monotonic)


class LogKeeper:
    """Queues logs and sends them to their volumes from a thread of its own (started on first use)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[KeptLog] = queue.Queue()
        self._keepers: dict[tuple[str, str], _Keeper] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def keep(self, log: KeptLog) -> None:
        self._queue.put(log)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="log-keeper", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Send every queued log now (the worker does this every `FLUSH_SECONDS`)."""
        waiting: dict[tuple[str, str, str], list[KeptLog]] = {}
        while True:
            try:
                log = self._queue.get_nowait()
            except queue.Empty:
                break
            waiting.setdefault((log.namespace, log.record, log.claim), []).append(log)
        for (namespace, record, claim), logs in waiting.items():
            for attempt in (1, 2):  # a second time with a new keeper Pod (the old one may have ended)
                try:
                    self._send(namespace, record, claim, logs)
                    break
                except Exception as error:  # a log is worth keeping, not worth holding anything up for
                    self._retire((namespace, claim))
                    if attempt == 2:
                        logger.warning(
                            "%d log(s) of record %s/%s not kept: %s", len(logs), namespace, record, error
                        )
        self._retire_idle()

    def _loop(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def _send(self, namespace: str, record: str, claim: str, logs: list[KeptLog]) -> None:
        keeper = self._keeper(namespace, record, claim)
        folder = f"{cluster_upload.VOLUME_ROOT}/{LOGS_SUBPATH}"
        keeper.shell.run(
            "keeping logs", ["sh", "-c", RECEIVE_LOGS, "sh", folder], lambda out: _archive(out, logs)
        )
        keeper.used = time.monotonic()

    def _keeper(self, namespace: str, record: str, claim: str) -> _Keeper:
        key = (namespace, claim)
        if key not in self._keepers:
            owner = kube.get_custom("records", namespace, record)
            if owner is None:
                raise cluster_upload.UploadError(f'record "{record}" is gone')
            stack = contextlib.ExitStack()
            shell, _ = stack.enter_context(cluster_upload.volume_shell(namespace, owner, claim))
            self._keepers[key] = _Keeper(shell, stack.close)
        return self._keepers[key]

    def _retire_idle(self) -> None:
        now = time.monotonic()
        for key in [key for key, keeper in self._keepers.items() if now - keeper.used > IDLE_SECONDS]:
            self._retire(key)

    def _retire(self, key: tuple[str, str]) -> None:
        keeper = self._keepers.pop(key, None)
        if keeper is not None:
            try:
                keeper.close()  # deletes the keeper Pod
            except Exception as error:
                logger.warning("could not delete a keeper pod of %s: %s", key, error)


def _archive(out: io.RawIOBase, logs: list[KeptLog]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as archive:
        for log in logs:
            entry = tarfile.TarInfo(f"{log.invocation}.log")
            entry.size, entry.mode, entry.mtime = len(log.text), 0o644, int(time.time())
            archive.addfile(entry, io.BytesIO(log.text))


KEEPER = LogKeeper()
