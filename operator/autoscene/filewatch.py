"""RecordFiles followed with one list and watch per scope, outside kopf's per-object machinery.

kopf keeps about 1 KB of memory for every object it has seen, and a worker with its queued events (each
a whole body) for every object with events in flight: at 100,000 files that alone passes the operator's
memory budget. A RecordFile needs neither: dispatch is idempotent and wants each new content once, and
a Record's totals want each file's size and time. So files are followed here with the client's own
list and watch (paged lists, the watch resumed from the last resourceVersion, a new list when the
server says it is too old: 410 Gone, as client-go's reflector does), keeping (size, addedAt) per
file, and new content goes to dispatch through a bounded queue: when dispatch falls behind, the watch
waits (the API server holds the events), instead of the operator's memory growing with the backlog.

Threads: one per scope reads the API; everything it learns is applied on the operator's event loop
(`loop.call_soon_threadsafe`), which is where the totals are read and dispatch runs.
"""

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from . import GROUP, VERSION, files, kube, metrics, tallies, watching

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, record)
PAGE_SIZE = 500
# Events in flight (applied on the loop, or waiting for dispatch) before the watch waits; dispatch
# workers running at once.
IN_FLIGHT = 1000
WORKERS = 8


def _counted(file: Mapping[str, Any]) -> tuple[Key, str]:
    """A RecordFile's place in a Record's totals: (namespace, record) and its name."""
    return (file["metadata"]["namespace"], file["spec"]["record"]), file["metadata"]["name"]


Dispatch = Callable[[dict[str, Any]], Awaitable[None]]


class FileWatch:
    """Follows the RecordFiles of `namespaces` (empty: all), from threads of its own.

    On the event loop it was started on, `sizes` follows every file, `on_totals(key)` is called when a
    Record's files changed, and `dispatch(file)` gets each file whose content is not dispatched yet
    (`files.needs_dispatch`).
    """

    def __init__(self, namespaces: Sequence[str], on_totals: Callable[[Key], None]) -> None:
        self.scopes: list[str | None] = list(namespaces) or [None]
        self.on_totals = on_totals
        self.sizes = tallies.Entries()  # each Record's files as (size, addedAt)
        self.stopped = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._room = threading.BoundedSemaphore(IN_FLIGHT)

    @property
    def started(self) -> bool:
        return self.loop is not None

    def start(self, dispatch: Dispatch) -> None:
        """Start the readers, and the workers that give each new content to `dispatch` (call on the
        event loop; once)."""
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.dispatch = dispatch
        self._tasks = [self.loop.create_task(self._work()) for _ in range(WORKERS)]
        for scope in self.scopes:
            threading.Thread(target=self._follow, args=(scope,), daemon=True, name=f"files-{scope}").start()

    def stop(self) -> None:
        self.stopped.set()
        for task in self._tasks:
            task.cancel()

    # On the reader threads -------------------------------------------------------------------------

    def _follow(self, scope: str | None) -> None:
        api = kube.custom()
        list_function = (
            functools.partial(api.list_cluster_custom_object, GROUP, VERSION, files.PLURAL)
            if scope is None
            else functools.partial(api.list_namespaced_custom_object, GROUP, VERSION, scope, files.PLURAL)
        )
        watching.follow(
            list_function,
            self._seen,
            self._seen_deleted,
            self.stopped,
            lambda listed: self._on_loop(self._forget_all_but, scope, listed),
            page_size=PAGE_SIZE,
            watch_seconds=watching.RENEW_SECONDS,
            failures=logging.WARNING,
        )

    def _seen(self, body: dict[str, Any]) -> None:
        if self._make_room():
            self._on_loop(self._put, _compact(body))

    def _seen_deleted(self, body: dict[str, Any]) -> None:
        if self._make_room():
            self._on_loop(self._gone, _compact(body))

    def _make_room(self) -> bool:
        """Wait for room among the events in flight (on the loop or waiting for dispatch): when the
        operator is behind, the API server holds the events meanwhile. False once stopped."""
        while not self.stopped.is_set():
            if self._room.acquire(timeout=1):
                return True
        return False

    def _on_loop(self, call: Callable[..., None], *arguments: Any) -> None:
        assert self.loop is not None, "started"
        self.loop.call_soon_threadsafe(call, *arguments)

    # On the event loop ----------------------------------------------------------------------------

    def _put(self, file: dict[str, Any]) -> None:
        metrics.watch_event(files.PLURAL)
        spec = file["spec"]
        self.on_totals(self.sizes.put(*_counted(file), (int(spec["size"]), str(spec["addedAt"]))))
        if files.needs_dispatch(file):
            self.queue.put_nowait(file)  # its room is given back once dispatched
        else:
            self._room.release()

    def _gone(self, file: dict[str, Any]) -> None:
        metrics.watch_event(files.PLURAL)
        self.on_totals(self.sizes.drop(*_counted(file)))
        self._room.release()

    def _forget_all_but(self, scope: str | None, listed: list[tuple[str, str, str]]) -> None:
        """After a full listing of the scope: forget the files it no longer holds (deleted while the
        watch was down)."""
        present = {(namespace, name) for namespace, name, _ in listed}
        for key, by_name in list(self.sizes.by_key.items()):
            if scope is not None and key[0] != scope:
                continue
            vanished = [name for name in by_name if (key[0], name) not in present]
            for name in vanished:
                del by_name[name]
            if not by_name:
                del self.sizes.by_key[key]
            if vanished:
                self.on_totals(key)

    async def _work(self) -> None:
        while True:
            file = await self.queue.get()
            try:
                await self.dispatch(file)
            except Exception as error:  # the reconciliation pass dispatches what failed here
                logger.warning("dispatching %s failed: %s", file["metadata"]["name"], error)
            finally:
                self._room.release()


def _compact(body: Mapping[str, Any]) -> dict[str, Any]:
    """What dispatch and the totals read of a RecordFile: its name, namespace, uid, generation, spec
    and status."""
    meta = body.get("metadata") or {}
    return {
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "generation", "resourceVersion")
            if key in meta
        },
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }
