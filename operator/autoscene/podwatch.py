"""The Pods of the operator's Jobs, followed with one list and watch instead of a LIST per Job event.

Mirroring a Job into its Invocation reads the Job's Pods: why a Pod waits (an image pull failing), and
once the Job ended, the action container's exit code, termination message and log. Listing them on
every Job event costs the API server a request that scans every Pod of the namespace by label (and
the operator a round trip) about three times per run (2.7 in a burst of 1,000); a watch costs one
event per change of a Pod. So the Pods labelled with an Invocation (`labels.INVOCATION`: run Jobs and
publish Jobs) are followed here, compacted to what `status` reads, as client-go's informers keep a
cache for controllers.

The Job controller writes nothing on the Job while its Pod waits (its `active` count stays), so no Job
event tells why a run waits. When the action's container starts waiting for a reason other than its
start (a missing Secret, an image that cannot be pulled), `on_trouble` is told the Job, and the run's
status says so within moments instead of at the next periodic pass.

A cache can be a little behind: the watch of Jobs and the watch of Pods are two streams, and the Job
controller marks a Job complete only after its Pod's status says terminated, but nothing orders the
two events on their way to us. So for a Job that ended, `invocations.job_pods` wants the newest Pod
in its final state, and lists the Pods itself when the cache has not seen that state yet.
"""

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import kube, labels, status, watching

JobKey = tuple[str, str]  # (namespace, Job name)
# The Job controller's label on its Pods (`batch.kubernetes.io/job-name` since Kubernetes 1.27; the
# older `job-name` stays for compatibility: the Jobs doc, "Job labels").
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


class PodWatch:
    """Follows the Pods labelled with an Invocation in `namespaces` (empty: all), from threads of its
    own; `pods_of` answers from what it has seen once a first full listing is in."""

    def __init__(self) -> None:
        self._by_job: dict[JobKey, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._listed: set[str | None] = set()
        self.stopped = threading.Event()
        self._on_trouble: Callable[[JobKey], None] = lambda key: None

    def start(
        self, namespaces: Sequence[str], on_trouble: Callable[[JobKey], None] = lambda key: None
    ) -> None:
        """Start one reader thread per scope, from nothing known. Each start has a stop flag of its
        own: the readers of an earlier start (an operator restarted in the same process, a lead lost
        and won again) end on theirs instead of going on beside the new ones.

        `on_trouble(job)` is called on a reader thread when a Pod's action container starts waiting
        for a new reason that is not its start (`status.trouble_of`): it should hand the work over."""
        self.stop()
        self.stopped = threading.Event()
        self._on_trouble = on_trouble
        with self._lock:
            self._by_job.clear()
            self._listed.clear()
        scopes: list[str | None] = list(namespaces) or [None]
        for scope in scopes:
            threading.Thread(
                target=self._follow, args=(scope, self.stopped), daemon=True, name=f"pods-{scope}"
            ).start()

    def stop(self) -> None:
        self.stopped.set()

    def pods_of(self, namespace: str, job: str) -> list[dict[str, Any]] | None:
        """The Job's Pods as last seen (compacted); None until the namespace's first listing is in (or
        when not started): the caller lists them itself then."""
        if not (None in self._listed or namespace in self._listed):
            return None
        with self._lock:
            return list(self._by_job.get((namespace, job), {}).values())

    # On the reader threads -------------------------------------------------------------------------

    def _follow(self, scope: str | None, stopped: threading.Event) -> None:
        api = kube.core()
        watching.follow_scope(
            scope,
            api.list_pod_for_all_namespaces,
            api.list_namespaced_pod,
            self._seen,
            self._gone,
            stopped,
            functools.partial(self._forget_all_but, scope),
            label_selector=labels.INVOCATION,
        )

    def _seen(self, pod: dict[str, Any]) -> None:
        key = _job_of(pod)
        if key is None:
            return
        compact = _compact(pod)
        with self._lock:
            by_name = self._by_job.setdefault(key, {})
            before = by_name.get(pod["metadata"]["name"])
            by_name[pod["metadata"]["name"]] = compact
        trouble = status.trouble_of(compact)
        if trouble is not None and (before is None or status.trouble_of(before) != trouble):
            self._on_trouble(key)

    def _gone(self, pod: dict[str, Any]) -> None:
        key = _job_of(pod)
        if key is None:
            return
        with self._lock:
            found = self._by_job.get(key, {})
            found.pop(pod["metadata"]["name"], None)
            if not found:
                self._by_job.pop(key, None)

    def _forget_all_but(self, scope: str | None, listed: list[tuple[str, str, str]]) -> None:
        """After a full listing of the scope: forget the Pods it no longer holds."""
        present = {(namespace, name) for namespace, name, _ in listed}
        with self._lock:
            for key, by_name in list(self._by_job.items()):
                if scope is not None and key[0] != scope:
                    continue
                for name in [name for name in by_name if (key[0], name) not in present]:
                    del by_name[name]
                if not by_name:
                    del self._by_job[key]
        self._listed.add(scope)


def _job_of(pod: Mapping[str, Any]) -> JobKey | None:
    meta = pod.get("metadata") or {}
    pod_labels = meta.get("labels") or {}
    job = next((pod_labels[label] for label in JOB_NAME_LABELS if pod_labels.get(label)), None)
    return (meta["namespace"], job) if job and meta.get("namespace") else None


def _compact(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What `status` and the log reader read of a Pod: its name, creation time, phase and the
    states of its containers."""
    meta, pod_status = pod.get("metadata") or {}, pod.get("status") or {}
    return {
        "metadata": {key: meta[key] for key in ("name", "namespace", "creationTimestamp") if key in meta},
        "status": {key: pod_status[key] for key in ("phase", "containerStatuses") if key in pod_status},
    }


PODS = PodWatch()
