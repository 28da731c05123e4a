"""Each run's log kept on its Record's volume, at `logs/<invocation>.log` (its last `KEPT_BYTES`), so
that `autoscene logs` prints it after the Job and its Pods are gone, without weighing on etcd.

The operator reads a run's log once, when its Job has finished (`invocations.sync_with_job`), and
holds it for a few minutes behind a random, unguessable URL of its own small HTTP server. Every second,
the logs waiting for one volume go there together: a keeper Job (busybox, "restricted", owned by the
Record, gone a minute after it ends) mounts the volume and fetches each log with `wget`. So logs
travel neither through etcd nor through the exec API (which would let the operator run commands in
any Pod of the cluster); the Record's namespace must let its Pods reach the operator's `--log-port`.
Keeping a log never holds up a run: a log that cannot be kept is dropped with a warning.
"""

import http.server
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import jobs, kube, labels, naming, ownership

logger = logging.getLogger(__name__)

KEPT_BYTES = 1 << 20
LOGS_SUBPATH = "logs"
FLUSH_SECONDS = 1.0
# How long a log waits to be fetched (a keeper Pod that cannot start in that time loses it), and how
# much the operator holds at most meanwhile (the oldest go first).
HOLD_SECONDS = 300.0
HOLD_BYTES = 128 << 20
KEEPER_ROLE = "keep-logs"
KEEPER_CONTAINER = "keep-logs"
VOLUME_ROOT = "/volume"
# Pairs of (invocation, token) follow; "$LOGS" and "$BASE" come from the environment.
KEEP_SCRIPT = """set -u
mkdir -p "$LOGS"
failed=0
while [ "$#" -gt 1 ]; do
  if wget -q -O "$LOGS/.$1.part" "$BASE/$2"; then mv -f "$LOGS/.$1.part" "$LOGS/$1.log"
  else rm -f "$LOGS/.$1.part"; echo "$1: its log could not be fetched" >&2; failed=1; fi
  shift 2
done
exit $failed"""


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


def keeper_job(
    record: Mapping[str, Any], claim: str, base_url: str, fetches: list[tuple[str, str]]
) -> dict[str, Any]:
    """The Job that fetches logs, as (invocation, token) pairs, from `base_url` into the volume
    `claim` of `record` (a Record body: name, namespace and uid are used)."""
    meta = record["metadata"]
    job_labels = {labels.MANAGED_BY: labels.MANAGER, labels.ROLE: KEEPER_ROLE}
    if labels.is_label_value(meta["name"]):
        job_labels[labels.RECORD] = meta["name"]
    arguments = [part for fetch in fetches for part in fetch]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.fresh_name(meta["name"], "logs"),
            "namespace": meta["namespace"],
            "labels": job_labels,
            "ownerReferences": ownership.owned_by(record, block_owner_deletion=False),
        },
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": int(HOLD_SECONDS),
            "ttlSecondsAfterFinished": 60,
            "template": {
                "metadata": {"labels": job_labels},
                "spec": jobs.helper_pod_spec(
                    KEEPER_CONTAINER,
                    ["sh", "-c", KEEP_SCRIPT, "sh", *arguments],
                    {"LOGS": f"{VOLUME_ROOT}/{LOGS_SUBPATH}", "BASE": base_url},
                    [{"name": "record", "mountPath": VOLUME_ROOT}],
                    [{"name": "record", "persistentVolumeClaim": {"claimName": claim}}],
                    memory_limit="32Mi",
                ),
            },
        },
    }


class LogKeeper:
    """Holds logs for fetching, and makes the keeper Jobs that fetch them (from a thread of its own,
    started with the HTTP server by `serve`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[float, bytes]] = {}  # token → (held since, log)
        self._waiting: list[tuple[KeptLog, str]] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self.base_url = ""

    def serve(self, port: int, advertised_host: str) -> None:
        """Serve held logs on `port` (0: any free one), at `http://advertised_host:port/logs/`."""
        if self._server is not None:
            return
        keeper = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                body = keeper.held(self.path.removeprefix("/logs/"))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: object) -> None:
                logger.debug(format, *args)

        self._server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self.base_url = f"http://{advertised_host}:{self._server.server_address[1]}/logs"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="log-server").start()
        threading.Thread(target=self._loop, daemon=True, name="log-keeper").start()

    def keep(self, log: KeptLog) -> None:
        """Hold the log and have it fetched into its volume soon; dropped when nothing serves logs."""
        if self._server is None:
            return
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._held[token] = (time.monotonic(), log.text)
            self._waiting.append((log, token))
            self._forget_old()

    def held(self, token: str) -> bytes | None:
        with self._lock:
            found = self._held.get(token)
        return found[1] if found else None

    def flush(self) -> None:
        """Make one keeper Job per volume for the logs waiting (the worker does this every second)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self._forget_old()
        batches: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        for log, token in waiting:
            batches.setdefault((log.namespace, log.record, log.claim), []).append((log.invocation, token))
        for (namespace, record, claim), fetches in batches.items():
            try:
                owner = kube.get_custom("records", namespace, record)
                if owner is None:
                    continue  # the Record and its volume are gone
                body = keeper_job(owner, claim, self.base_url, fetches)
                kube.batch().create_namespaced_job(namespace, body)
            except Exception as error:  # a log is worth keeping, not worth holding anything up for
                logger.warning(
                    "%d log(s) of record %s/%s not kept: %s", len(fetches), namespace, record, error
                )

    def _loop(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def _forget_old(self) -> None:
        """Drop logs held too long, then the oldest while over `HOLD_BYTES` (called with the lock)."""
        now = time.monotonic()
        for token in [token for token, (since, _) in self._held.items() if now - since > HOLD_SECONDS]:
            del self._held[token]
        total = sum(len(text) for _, text in self._held.values())
        for token in list(self._held):  # oldest first: dicts keep insertion order
            if total <= HOLD_BYTES:
                break
            total -= len(self._held.pop(token)[1])


def advertised_host() -> str:
    """The address keeper Pods reach the operator at: the Pod's IP in a cluster (`POD_IP`, from the
    downward API), else this machine's loopback (the sandbox runs Pods as local processes)."""
    return os.environ.get("POD_IP") or "127.0.0.1"


KEEPER = LogKeeper()
