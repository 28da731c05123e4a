"""The operator's Jobs, followed with one list and watch per scope, outside kopf's per-object machinery.

A Job changes four to five times in a run (created, active, its Pod counted, complete, deleted by its
TTL), and each change is mirrored into the run's Invocation. Through kopf every such event also went
through its per-object worker, cause detection and handler invocation: about a fifth of the operator's
CPU in a burst of runs, and kopf watched every Job of the namespace, filtering by label on its side. Here
the API server filters (`app.kubernetes.io/managed-by=autoscene`, the label selector of the list and
watch), and each Job's events reach `on_change` on the event loop one at a time, the newest only: what
arrives while a Job's change is being recorded is coalesced into one more call, as kopf's batching did.

Threads: one per scope reads the API; the events are applied on the loop the watch was started on.
"""

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import kube, labels, metrics, watching

logger = logging.getLogger(__name__)

JobKey = tuple[str, str]  # (namespace, Job name)
# (the Job as last seen, whether it was deleted)
OnChange = Callable[[dict[str, Any], bool], Awaitable[None]]
SELECTOR = f"{labels.MANAGED_BY}={labels.MANAGER}"


class Latest:
    """Runs `on_change(job, deleted)` for each key's newest state, one call at a time per key.

    Called on the event loop only. A state that arrives while its key's call runs replaces any other
    waiting state of that key: the call after reads the newest, never a stale one.
    """

    def __init__(self, on_change: OnChange) -> None:
        self._on_change = on_change
        self._waiting: dict[JobKey, tuple[dict[str, Any], bool]] = {}
        self._running: dict[JobKey, asyncio.Task[None]] = {}

    def put(self, key: JobKey, job: dict[str, Any], deleted: bool) -> None:
        self._waiting[key] = (job, deleted)
        if key not in self._running:
            self._running[key] = asyncio.get_running_loop().create_task(self._drain(key))

    @property
    def busy(self) -> int:
        """Keys with a call running or waiting."""
        return len(self._running)

    async def _drain(self, key: JobKey) -> None:
        try:
            while key in self._waiting:
                job, deleted = self._waiting.pop(key)
                try:
                    await self._on_change(job, deleted)
                except Exception as error:  # logged; the reconciliation pass looks at the run again
                    logger.warning(f"recording the change of job {key[0]}/{key[1]} failed: {error}")
        finally:
            del self._running[key]


class JobWatch:
    """Follows the operator's Jobs in `namespaces` (empty: all) from threads of its own."""

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def start(self, namespaces: Sequence[str], on_change: OnChange) -> None:
        """Start the readers (call on the event loop); `on_change(job, deleted)` runs there. A new
        start stops the readers of the last."""
        self.stop()
        self.stopped = threading.Event()
        loop, latest, stopped = asyncio.get_running_loop(), Latest(on_change), self.stopped

        def seen(deleted: bool, job: dict[str, Any]) -> None:  # on a reader thread
            if stopped.is_set():
                return
            metrics.watch_event("jobs")
            meta = job["metadata"]
            # A Job whose label no longer matches the selector leaves the watch with a DELETED event
            # (the API concepts doc, "Efficient detection of changes"); it still exists.
            deleted = deleted and (meta.get("labels") or {}).get(labels.MANAGED_BY) == labels.MANAGER
            try:
                loop.call_soon_threadsafe(put, (meta.get("namespace", ""), meta["name"]), job, deleted)
            except RuntimeError:  # the loop is closed: the operator stopped
                stopped.set()

        def put(key: JobKey, job: dict[str, Any], deleted: bool) -> None:  # on the loop
            if not stopped.is_set():  # what the readers sent before the stop is dropped too
                latest.put(key, job, deleted)

        scopes: list[str | None] = list(namespaces) or [None]
        for scope in scopes:
            threading.Thread(
                target=self._follow,
                args=(scope, stopped, functools.partial(seen, False), functools.partial(seen, True)),
                daemon=True,
                name=f"jobs-{scope}",
            ).start()

    def stop(self) -> None:
        self.stopped.set()

    def _follow(
        self,
        scope: str | None,
        stopped: threading.Event,
        on_object: Callable[[dict[str, Any]], None],
        on_deleted: Callable[[dict[str, Any]], None],
    ) -> None:
        api = kube.batch()
        watching.follow_scope(
            scope,
            api.list_job_for_all_namespaces,
            api.list_namespaced_job,
            on_object,
            on_deleted,
            stopped,
            label_selector=SELECTOR,
        )


JOBS = JobWatch()
