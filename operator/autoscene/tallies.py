"""Counts shown in a status (a Record's files, a Trigger's runs), derived from the objects themselves.

A count kept by adding one per event is wrong after any crash or failed call between the event and the
write. These are recomputed from one of kopf's in-memory indexes (which follows the objects by watch)
whenever a write is due, so they are right whatever events were lost, and a burst of changes costs one
status write per object and `delay` seconds.
"""

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import kube

Key = tuple[str, str]  # (namespace, name) of the object whose status shows the count
Summary = Callable[[Iterable[Any]], dict[str, Any]]


class Entries(Mapping[Key, Iterable[Any]]):
    """What a count is derived from, grouped by the object whose status shows it: `key` → the entries
    of the objects counted under it, by name. The caller keeps it from its watch: `put` on every event
    of a counted object, `drop` on its deletion (both return the key, for `Tally.changed`).

    Our own few lines, not a kopf index: an index runs a handler, with kopf's per-handler bookkeeping,
    on every event of every counted object, which a burst of runs paid for at each status write."""

    def __init__(self) -> None:
        self.by_key: dict[Key, dict[str, Any]] = {}

    def __getitem__(self, key: Key) -> Iterable[Any]:
        return self.by_key[key].values()

    def __iter__(self) -> Iterator[Key]:
        return iter(self.by_key)

    def __len__(self) -> int:
        return len(self.by_key)

    def put(self, key: Key, name: str, entry: Any) -> Key:
        self.by_key.setdefault(key, {})[name] = entry
        return key

    def drop(self, key: Key, name: str) -> Key:
        found = self.by_key.get(key, {})
        found.pop(name, None)
        if not found:
            self.by_key.pop(key, None)
        return key


class Tally:
    """Writes `summarize(index[key])` into the status of `plural` `key`, at most once per `delay`.

    `changed` is called from the operator's event loop with the live index whenever an entry under
    `key` may have changed; a failed write is tried again `delay` seconds later. `stop` (on that loop, at the
    operator's cleanup) drops the writes not yet made: the loop closes its thread pool right after.
    """

    def __init__(self, plural: str, summarize: Summary, delay: float = 1.0) -> None:
        self.plural, self.summarize, self.delay = plural, summarize, delay
        self._due: dict[Key, asyncio.TimerHandle] = {}
        self._writing: set[asyncio.Task[None]] = set()
        self._written: dict[Key, dict[str, Any]] = {}
        self._stopped = False

    def changed(self, key: Key, index: Mapping[Any, Iterable[Any]]) -> None:
        if key in self._due or self._stopped:
            return
        loop = asyncio.get_running_loop()
        self._due[key] = loop.call_later(self.delay, self._start_writing, key, index)

    def stop(self) -> None:
        self._stopped = True
        for timer in self._due.values():
            timer.cancel()
        self._due.clear()
        for task in self._writing:
            task.cancel()

    def _start_writing(self, key: Key, index: Mapping[Any, Iterable[Any]]) -> None:
        task = asyncio.get_running_loop().create_task(self._write(key, index))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, key: Key, index: Mapping[Any, Iterable[Any]]) -> None:
        self._due.pop(key, None)
        summary = self.summarize(index.get(key, ()))
        if self._written.get(key) == summary:
            return
        try:
            await asyncio.to_thread(kube.patch_custom_status, self.plural, key[0], key[1], summary)
        except ApiException as error:
            if error.status == 404:
                self._written.pop(key, None)  # the object is gone
                return
            self.changed(key, index)  # try again a little later
            return
        self._written[key] = summary
