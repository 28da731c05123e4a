"""A work queue with client-go's guarantees (k8s.io/client-go/util/workqueue), for the sandbox's
controllers: a key added many times waits once; a key being processed is handed to no other worker,
and if added meanwhile it is handed out again once `done`. So each object is reconciled by one
worker at a time, while several workers reconcile different objects side by side, as
kube-controller-manager's controllers do. (Written here: no maintained Python package has these
semantics; `queue.Queue` has neither the deduplication nor the per-key exclusion.)
"""

import threading
from collections import deque
from typing import Generic, TypeVar

Key = TypeVar("Key")


class WorkQueue(Generic[Key]):
    def __init__(self) -> None:
        self._ready: deque[Key] = deque()
        self._dirty: set[Key] = set()  # added and not handed out since
        self._processing: set[Key] = set()
        self._changed = threading.Condition()
        self._shut_down = False

    def add(self, key: Key) -> None:
        with self._changed:
            if self._shut_down or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._ready.append(key)
                self._changed.notify()

    def get(self) -> Key | None:
        """The next key, waiting for one; None once shut down. Call `done(key)` after processing it."""
        with self._changed:
            while not self._ready and not self._shut_down:
                self._changed.wait()
            if self._shut_down:
                return None
            key = self._ready.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: Key) -> None:
        with self._changed:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready.append(key)
                self._changed.notify()

    def shut_down(self) -> None:
        with self._changed:
            self._shut_down = True
            self._changed.notify_all()
