"""A periodic pass over everything, for what events alone cannot guarantee.

Watch events are delivered once and kopf does not retry event handlers: a transient API error on the
last event of a Job, or of a Record's upload, would otherwise leave a run "Running" or a file
undispatched until the next restart. Every `interval` seconds this pass re-derives those from the
objects themselves; every `retention_interval` seconds it applies the Triggers' retention policies
(age limits take effect even when a Trigger no longer fires). It is one loop of the operator, not a
kopf timer, so no object needs a finalizer for it.
"""

import logging
import threading
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import GROUP, VERSION, dispatching, files, invocations, kube, status, triggers

logger = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, interval: float = 30, retention_interval: float = 600) -> None:
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
            try:
                reconcile_once(prune=prune)
            except Exception as error:  # the next pass tries again
                logger.warning("reconciliation pass failed: %s", error)
            if prune:
                last_retention = time.monotonic()


def reconcile_once(prune: bool = False) -> None:
    _dispatch_what_was_missed()
    for action in _everywhere("actions"):
        if (action.get("spec") or {}).get("concurrency"):
            invocations.start_queued(action["metadata"]["namespace"], action)
    for invocation in _everywhere(invocations.PLURAL):
        current = invocation.get("status") or {}
        if current.get("reason") == invocations.ACTION_NOT_FOUND:
            invocations.start(invocation)  # starts if its Action exists now
        elif current.get("jobName") and current.get("phase") not in status.FINISHED:
            meta = invocation["metadata"]
            invocations.sync_with_job(
                meta["namespace"], _job(meta["namespace"], current["jobName"]), meta["name"], meta["uid"]
            )
    if prune:
        for trigger in _everywhere("triggers"):
            if (trigger.get("spec") or {}).get("retention"):
                triggers.apply_retention(trigger["metadata"]["namespace"], trigger["metadata"]["name"])


def _dispatch_what_was_missed() -> None:
    """Files whose content was never dispatched (a failed call, an event lost): dispatch them now."""
    waiting = [file for file in _everywhere(files.PLURAL) if files.needs_dispatch(file)]
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for file in waiting:
        namespace = file["metadata"]["namespace"]
        if namespace not in by_namespace:
            by_namespace[namespace] = kube.list_custom("triggers", namespace)
        record = kube.get_custom("records", namespace, file["spec"]["record"])
        if record is None:
            continue  # its Record is gone: the garbage collector takes the file
        try:
            dispatching.dispatch(file, record["metadata"].get("labels"), by_namespace[namespace])
        except Exception as error:  # one file's trouble must not hold up the others
            logger.warning("could not dispatch %s: %s", file["spec"]["path"], error)


def _everywhere(plural: str) -> list[dict[str, Any]]:
    listing = kube.custom().list_cluster_custom_object(GROUP, VERSION, plural)
    return list(listing.get("items") or [])


def _job(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return kube.sanitized(kube.batch().read_namespaced_job(name, namespace))
    except ApiException as error:
        if error.status == 404:
            return None
        raise
