"""Runs queued under an Action's concurrency limit: at most `spec.concurrency` of its Jobs at once in
its namespace, the others waiting in phase Queued and starting in creation order as slots free.

Kept in memory per (namespace, Action): the Invocations holding a slot (their Job created, the run not
finished) and those waiting, oldest first. Both are read from the API the first time an Action is
needed and again by `recount()` (the reconciliation pass calls it), so a restarted operator, or a run
deleted while it held a slot, is counted right; between passes the operator's own transitions keep
them. One lock, also held while a Job is created: the operator's handlers run on several threads.
"""

import bisect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import status

QUEUED_REASON = "ConcurrencyLimit"
Key = tuple[str, str]  # (namespace, Action)
Lister = Callable[[str, str], list[dict[str, Any]]]


@dataclass
class _Action:
    holders: set[str] = field(default_factory=set)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (creationTimestamp, name), sorted


class Slots:
    """`list_runs(namespace, action)` lists an Action's Invocations (to count them afresh)."""

    def __init__(self, list_runs: Lister) -> None:
        self._list_runs = list_runs
        self.lock = threading.RLock()
        self._actions: dict[Key, _Action] = {}

    def acquire(self, invocation: Mapping[str, Any], limit: int) -> int | None:
        """Take a slot for the Invocation: None when it got one, else its place in the queue (1 is next)."""
        meta = invocation["metadata"]
        with self.lock:
            state = self._state(meta["namespace"], invocation["spec"]["action"])
            entry = (meta.get("creationTimestamp", ""), meta["name"])
            if meta["name"] in state.holders:
                return None
            ahead = [waiting for waiting in state.waiting if waiting < entry]
            if len(state.holders) < limit and not ahead:
                state.holders.add(meta["name"])
                if entry in state.waiting:
                    state.waiting.remove(entry)
                return None
            if entry not in state.waiting:
                bisect.insort(state.waiting, entry)
            return state.waiting.index(entry) + 1

    def release(self, namespace: str, action: str, name: str) -> str | None:
        """The run is over: free its slot; the oldest queued Invocation, which may start now."""
        with self.lock:
            state = self._actions.get((namespace, action))
            if state is None:
                return None
            state.holders.discard(name)
            state.waiting = [entry for entry in state.waiting if entry[1] != name]
            return state.waiting[0][1] if state.waiting else None

    def holding(self, namespace: str, action: str) -> int:
        with self.lock:
            state = self._actions.get((namespace, action))
            return len(state.holders) if state else 0

    def recount(self, namespace: str, action: str) -> None:
        """Count the Action's runs afresh from the API (runs deleted while they held a slot, a lost
        event): the reconciliation pass's repair."""
        with self.lock:
            self._actions.pop((namespace, action), None)
            self._state(namespace, action)

    def _state(self, namespace: str, action: str) -> _Action:
        key = (namespace, action)
        if key not in self._actions:
            state = _Action()
            for run in self._list_runs(namespace, action):
                current, meta = run.get("status") or {}, run["metadata"]
                if current.get("jobName") and current.get("phase") not in status.FINISHED:
                    state.holders.add(meta["name"])
                elif current.get("phase") == status.QUEUED:
                    bisect.insort(state.waiting, (meta.get("creationTimestamp", ""), meta["name"]))
            self._actions[key] = state
        return self._actions[key]


def queued(action: str, limit: int, place: int) -> dict[str, Any]:
    """The status of a run waiting for a slot."""
    return {
        "phase": status.QUEUED,
        "reason": QUEUED_REASON,
        "message": f'{limit} of {limit} runs of Action "{action}" are running; this one was number {place} '
        "in the queue when it arrived",
    }
