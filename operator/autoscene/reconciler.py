"""A periodic pass over everything, for what events alone cannot guarantee.

Watch events are delivered once and kopf does not retry event handlers: a transient API error on the
last event of a Job, or of a Record's upload, would otherwise leave a run "Running" or a file
undispatched until the next restart. Every `interval` seconds this pass re-derives those from the
objects themselves; every `retention_interval` seconds it applies the Triggers' retention policies
(age limits take effect even when a Trigger no longer fires). It is one loop of the operator, not a
kopf timer, so no object needs a finalizer for it.
"""

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import actions, dispatching, files, invocations, kube, metrics, outputs, publishing, status, triggers

logger = logging.getLogger(__name__)
PAGE_SIZE = 500  # objects per list request: a pass over 100,000 files never holds them all at once


class Reconciler:
    """`namespaces`: the ones the operator serves (None: all)."""

    def __init__(
        self, namespaces: Sequence[str] | None = None, interval: float = 30, retention_interval: float = 600
    ) -> None:
        self.namespaces = list(namespaces) if namespaces else None
        self.interval, self.retention_interval = interval, retention_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        last_retention = time.monotonic()
        while not self._stop.wait(self.interval):
            prune = time.monotonic() - last_retention >= self.retention_interval
            done = reconcile_once(self.namespaces, prune=prune)
            metrics.reconciled(not done.failures)
            metrics.repaired("file", done.repaired_files)
            metrics.repaired("invocation", done.repaired_invocations)
            if prune:
                last_retention = time.monotonic()


@dataclass
class Pass:
    """What one pass did: repairs of what a watch event should have done, and failures (objects whose
    repair raised, lists that failed)."""

    repaired_files: int = 0
    repaired_invocations: int = 0
    failures: int = 0


def reconcile_once(namespaces: Sequence[str] | None = None, prune: bool = False) -> Pass:
    """One pass over the objects of `namespaces` (None: all). One object's trouble (or one failed list)
    is logged and skipped: it never stops the pass for the others."""
    done = Pass()
    triggers_of: dict[str, list[dict[str, Any]]] = {}
    for file in _objects(files.PLURAL, namespaces, done):
        if files.needs_dispatch(file):
            done.repaired_files += _each(done, file, _dispatch_missed, file, triggers_of)
    for action in _objects("actions", namespaces, done):
        _each(done, action, actions.refresh_readiness, action)
        if (action.get("spec") or {}).get("concurrency"):
            _each(done, action, invocations.start_queued, action["metadata"]["namespace"], action)
    for invocation in _objects(invocations.PLURAL, namespaces, done):
        done.repaired_invocations += _each(done, invocation, _repair, invocation)
    for trigger in _objects("triggers", namespaces, done):
        _each(done, trigger, triggers.refresh_readiness, trigger)
        if triggers.needs_backfill(trigger):  # its catch-up failed when the Trigger changed
            _each(
                done, trigger, triggers.backfill, trigger, _labels_from_api(trigger["metadata"]["namespace"])
            )
        if prune and (trigger.get("spec") or {}).get("retention"):
            meta = trigger["metadata"]
            _each(done, trigger, triggers.apply_retention, meta["namespace"], meta["name"])
    return done


def _labels_from_api(namespace: str) -> Callable[[str], dict[str, str] | None]:
    def labels_of(record: str) -> dict[str, str] | None:
        found = kube.get_custom("records", namespace, record)
        return (found["metadata"].get("labels") or {}) if found else None

    return functools.lru_cache(maxsize=256)(labels_of)


def _repair(invocation: dict[str, Any]) -> bool:
    """Start a run that waits (for its Action, a lost event); follow a run whose Job event was lost.
    True when the run's status had fallen behind its Job's."""
    current, meta = invocation.get("status") or {}, invocation["metadata"]
    if current.get("reason") == invocations.ACTION_NOT_FOUND:
        invocations.start(invocation)  # starts if its Action exists now
    elif current.get("reason") == outputs.REGISTERING:
        return _repair_publishing(invocation)
    elif current.get("jobName") and current.get("phase") not in status.FINISHED:
        job = invocations.read_job(meta["namespace"], current["jobName"])
        return invocations.sync_with_job(meta["namespace"], job, meta["name"], meta["uid"]) is not None
    return False


def _repair_publishing(invocation: dict[str, Any]) -> bool:
    """A run whose outputs wait to be registered: make its publish Job if it has none (the operator
    stopped, the output Record's volume came late), or follow the one it has."""
    meta, current = invocation["metadata"], invocation["status"]
    job_name = current["outputRecord"].get("jobName")
    if not job_name:
        try:
            return publishing.start(invocation) is not None
        except invocations.NotReady:
            return False
    job = invocations.read_job(meta["namespace"], job_name)
    return publishing.sync_with_publish_job(meta["namespace"], job, meta["name"], meta["uid"]) is not None


def _dispatch_missed(file: dict[str, Any], triggers_of: dict[str, list[dict[str, Any]]]) -> bool:
    """A file whose content was never dispatched (a failed call, an event lost): dispatch it now."""
    namespace = file["metadata"]["namespace"]
    if namespace not in triggers_of:
        triggers_of[namespace] = kube.list_custom("triggers", namespace)
    record = kube.get_custom("records", namespace, file["spec"]["record"])
    if record is None:  # its Record is gone, and the garbage collector takes the file
        return False
    dispatching.dispatch(file, record["metadata"].get("labels"), triggers_of[namespace])
    return True


def _each(done: Pass, obj: dict[str, Any], repair: Callable[..., object], *arguments: Any) -> bool:
    """Whether `repair(*arguments)` repaired something; its failure is logged and counted."""
    try:
        return repair(*arguments) is True
    except Exception as error:  # one object's trouble must not hold up the others
        meta = obj["metadata"]
        logger.warning("reconciling %s/%s failed: %s", meta.get("namespace"), meta.get("name"), error)
        done.failures += 1
        return False


def _objects(plural: str, namespaces: Sequence[str] | None, done: Pass) -> Iterator[dict[str, Any]]:
    """Every object of `plural` in `namespaces` (None: all), read a page at a time."""
    scopes: Sequence[str | None] = namespaces or [None]
    for namespace in scopes:
        try:
            for page in kube.pages_of_custom(plural, namespace, PAGE_SIZE):
                yield from page
        except ApiException as error:  # an expired continue token, a failing server: next pass
            logger.warning("listing %s in %s failed: %s", plural, namespace or "all namespaces", error)
            done.failures += 1
