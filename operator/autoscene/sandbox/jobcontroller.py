"""The sandbox's Job controller: Pods for Jobs, and the Jobs' status from their Pods.

It follows Jobs and their Pods with watches (no polling) and does what Kubernetes' Job controller does
for Jobs of one Pod at a time (the operator's shape): it creates a Pod from the template (named
`<job>-<5 random characters>`, labelled and owned by the Job) unless the Job is suspended or finished;
counts `active`, `succeeded` and `failed`; replaces a failed Pod until `backoffLimit` failures are
exceeded; fails the Job when `activeDeadlineSeconds` passes (deleting its Pod); writes the conditions
the real one writes (`SuccessCriteriaMet` then `Complete`; `FailureTarget` then `Failed`, with reason
`BackoffLimitExceeded` or `DeadlineExceeded`), `startTime`, `completionTime` and `ready` (the Pods
whose Ready condition holds, so a Job's watchers learn when its Pod runs); and deletes a
finished Job after `ttlSecondsAfterFinished` (the TTL-after-finished controller), its Pods going with
it by garbage collection. The Pods are run by the sandbox's kubelet, like any other Pod.

A failed Pod is judged by the Job's `podFailurePolicy`: `FailJob` ends the Job (reason
`PodFailurePolicy`), `Ignore` replaces the Pod without counting it, `Count` counts it.

Not done: `parallelism` or `completions` above one, indexed Jobs, and the back-off delay between
retries (the next Pod starts at once).
"""

import heapq
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import kube, ownership, timestamps, watching
from .workqueue import WorkQueue

logger = logging.getLogger(__name__)
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
FINISHED_PHASES = ("Succeeded", "Failed")
# How long Pod events of a Job are gathered before the Job is reconciled, as kube-controller-manager
# does for 1 s (`SyncJobBatchPeriod`, pkg/controller/job/job_controller.go). A quarter of that here: a
# sandbox Pod of a quick action starts and ends within it, and a run's end reaches its Invocation
# sooner (a burst of 1,000 runs measured the same with 0.25 s as with 1 s).
SYNC_BATCH_SECONDS = 0.25


# Jobs reconciled side by side: kube-controller-manager's `--concurrent-job-syncs` default. Each
# reconciliation waits for the API server (a Pod to create, a status to write); one at a time, a burst
# of 5,000 Jobs went at the pace of one request's round trip.
WORKERS = 5
RETRY_SECONDS = 1.0  # before a failed reconciliation is tried again


@dataclass
class JobState:
    """What the controller knows of one Job. `job`, `pods` and `deleted` are what the watches last
    showed (written by their threads under the controller's lock); the rest is the reconciliation's
    own bookkeeping, touched by the one worker that holds the Job (`WorkQueue`)."""

    job: dict[str, Any]
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: dict[str, dict[str, Any]] = field(default_factory=dict)  # Pods gone since the last sync
    counted: set[str] = field(default_factory=set)  # Pods whose end is in the Job's status
    written: dict[str, Any] = field(default_factory=dict)  # the status fields this controller wrote
    succeeded: int = 0
    failed: int = 0
    finished: bool = False
    final: dict[str, Any] | None = None  # the finished status decided, until it is written
    deadline_passed: bool = False


class LocalJobController:
    """Runs until stopped: `start()`, `stop()`."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._batch = client.BatchV1Api(api)
        self._core = client.CoreV1Api(api)
        self._stop = threading.Event()
        # The states' watched parts and the table of Jobs; never held for a request.
        self._lock = threading.Lock()
        self._jobs: dict[str, JobState] = {}  # by Job uid
        self._queue: WorkQueue[str] = WorkQueue()  # Job uids to reconcile
        self._timers: list[tuple[float, int, str, str]] = []  # (when, tiebreak, what, job uid)
        self._batched: set[str] = set()  # Jobs with a reconciliation due after Pod events
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        targets = [("jobs", self._follow_jobs), ("pods", self._follow_pods), ("timers", self._run_timers)]
        targets += [(f"worker-{number}", self._work) for number in range(WORKERS)]
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"job-controller-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._queue.shut_down()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    # Following ---------------------------------------------------------------------------------------

    def _follow_jobs(self) -> None:
        watching.follow(
            self._batch.list_job_for_all_namespaces,
            self._on_job,
            self._on_job_deleted,
            self._stop,
            self._forget_jobs_not_listed,
        )

    def _follow_pods(self) -> None:
        watching.follow(
            self._core.list_pod_for_all_namespaces,
            self._on_pod,
            self._on_pod_deleted,
            self._stop,
            self._forget_pods_not_listed,
            label_selector=CONTROLLER_UID,
        )

    def _forget_jobs_not_listed(self, listed: list[tuple[str, str, str]]) -> None:
        """After a full listing (a start, or a relist after the watch broke): the Jobs deleted
        meanwhile, whose DELETED events no watch delivered, are forgotten."""
        present = {uid for _, _, uid in listed}
        with self._lock:
            for uid in [uid for uid in self._jobs if uid not in present]:
                del self._jobs[uid]

    def _forget_pods_not_listed(self, listed: list[tuple[str, str, str]]) -> None:
        """After a full listing: a Pod deleted meanwhile is taken as deleted, as its event would have
        been (a Job whose only Pod went in that gap would otherwise wait for it forever)."""
        present = {(namespace, name) for namespace, name, _ in listed}
        gone: list[str] = []
        with self._lock:
            for uid, state in self._jobs.items():
                namespace = state.job["metadata"]["namespace"]
                # Only Pods a watch showed: one being created (no resourceVersion yet) may postdate it.
                missing = [
                    name
                    for name, pod in state.pods.items()
                    if (namespace, name) not in present and pod["metadata"].get("resourceVersion")
                ]
                for name in missing:
                    _take_as_deleted(state, state.pods[name])
                if missing and not state.finished:
                    gone.append(uid)
        for uid in gone:
            self._sync_soon(uid)

    def _on_job(self, job: dict[str, Any]) -> None:
        uid = job["metadata"]["uid"]
        with self._lock:
            state = self._jobs.get(uid)
            if state is None:
                state = self._jobs[uid] = JobState(job, finished=_finished(job))
                status = job.get("status") or {}
                state.succeeded, state.failed = (
                    int(status.get("succeeded") or 0),
                    int(status.get("failed") or 0),
                )
                if state.finished:
                    self._schedule_ttl(job)
                    return
            state.job = job
        self._queue.add(uid)

    def _on_job_deleted(self, job: dict[str, Any]) -> None:
        with self._lock:
            self._jobs.pop(job["metadata"]["uid"], None)

    def _on_pod(self, pod: dict[str, Any]) -> None:
        uid = (pod["metadata"].get("labels") or {}).get(CONTROLLER_UID)
        with self._lock:
            state = self._jobs.get(uid or "")
            if state is None or state.finished:
                return
            state.pods[pod["metadata"]["name"]] = pod
        self._sync_soon(uid or "")

    def _on_pod_deleted(self, pod: dict[str, Any]) -> None:
        uid = (pod["metadata"].get("labels") or {}).get(CONTROLLER_UID)
        with self._lock:
            state = self._jobs.get(uid or "")
            if state is None or state.finished:
                return
            _take_as_deleted(state, pod)  # as it was when deleted
        self._sync_soon(uid or "")

    def _sync_soon(self, uid: str) -> None:
        """Reconcile the Job `SYNC_BATCH_SECONDS` after a Pod event, with whatever else its Pods did
        meanwhile, as the Job controller batches Pod events: a Pod that starts and ends within that
        time costs the Job one status write, not three."""
        with self._wake:
            if uid in self._batched:
                return
            self._batched.add(uid)
        self._schedule(time.monotonic() + SYNC_BATCH_SECONDS, "sync", uid)

    def _sync_batched(self, uid: str) -> None:
        with self._wake:
            self._batched.discard(uid)
        self._queue.add(uid)

    def _work(self) -> None:
        while (uid := self._queue.get()) is not None:
            try:
                self._sync(uid)
            except Exception as error:  # tried again a little later, as client-go's queues requeue
                logger.warning(
                    "reconciling job %s failed, trying again in %s s: %s", uid, RETRY_SECONDS, error
                )
                self._schedule(time.monotonic() + RETRY_SECONDS, "sync", uid)
            finally:
                self._queue.done(uid)

    def _sync(self, uid: str) -> None:
        """One reconciliation, on a worker that holds the Job: from a copy of what the watches showed,
        so that they go on while its requests wait."""
        with self._lock:
            state = self._jobs.get(uid)
            if state is None:
                return
            job, pods, deleted = state.job, dict(state.pods), state.deleted
            state.deleted = {}
        if job["metadata"].get("deletionTimestamp") or state.finished:
            return
        if state.final is not None:  # decided, but its write failed: only the write is done again
            self._write_final(state, job)
            return
        if state.deadline_passed:
            self._stop_at_deadline(state, job, pods)
            return
        self._reconcile(state, job, pods, deleted)

    # The Job controller's decisions ------------------------------------------------------------------

    def _reconcile(
        self,
        state: JobState,
        job: dict[str, Any],
        pods: dict[str, dict[str, Any]],
        deleted: dict[str, dict[str, Any]],
    ) -> None:
        """Count the Pods' ends (a Pod deleted before it ended counts as failed, as the Job controller
        counts it), then finish the Job, or keep one Pod running for it."""
        spec, meta = job["spec"], job["metadata"]
        now = timestamps.render(timestamps.now())
        for name, pod in {**pods, **deleted}.items():
            phase = _phase(pod)
            if name in state.counted or (phase not in FINISHED_PHASES and name not in deleted):
                continue
            state.counted.add(name)
            if phase == "Succeeded":
                state.succeeded += 1
                continue
            verdict, message = failure_verdict(spec.get("podFailurePolicy"), pod)
            if verdict == "FailJob":
                state.failed += 1
                self._finish(state, job, "FailureTarget", "Failed", "PodFailurePolicy", message, now)
                return
            if verdict != "Ignore":
                state.failed += 1
        active = [name for name, pod in pods.items() if _phase(pod) not in FINISHED_PHASES]
        if state.succeeded:
            self._finish(state, job, "SuccessCriteriaMet", "Complete", "CompletionsReached",
                         "Reached expected number of succeeded pods", now)  # fmt: skip
            return
        if state.failed > int(spec.get("backoffLimit", 6)):
            self._finish(state, job, "FailureTarget", "Failed", "BackoffLimitExceeded",
                         "Job has reached the specified backoff limit", now)  # fmt: skip
            return
        # The status as the watch last showed it, with what this controller wrote since: its own write
        # may not have come back through the watch yet, and writing it again would only cost an event.
        job_status = {**(job.get("status") or {}), **state.written}
        started = job_status.get("startTime")
        if spec.get("suspend"):
            for name in active:
                self._delete_pod(meta["namespace"], name)
            self._patch(
                state,
                {
                    "active": 0,
                    "failed": state.failed,
                    "conditions": [_condition("Suspended", "JobSuspended", "Job suspended", now)],
                },
            )
            return
        if not active:
            created = self._create_pod(state, job)
            if created is None:
                return
            pods[created["metadata"]["name"]] = created
            active = [created["metadata"]["name"]]
        ready = sum(1 for name in active if _ready(pods.get(name)))
        update: dict[str, Any] = {
            "active": len(active),
            "ready": ready,
            "failed": state.failed,
            "succeeded": 0,
        }
        if any(
            c.get("type") == "Suspended" and c.get("status") == "True"
            for c in job_status.get("conditions") or []
        ):
            update["conditions"] = [
                {**_condition("Suspended", "JobResumed", "Job resumed", now), "status": "False"}
            ]
        if not started:
            update["startTime"] = now
            deadline = spec.get("activeDeadlineSeconds")
            if deadline is not None:
                self._schedule(time.monotonic() + float(deadline), "deadline", meta["uid"])
        if any(job_status.get(key) != value for key, value in update.items()):
            self._patch(state, update)

    def _create_pod(self, state: JobState, job: dict[str, Any]) -> dict[str, Any] | None:
        """A new Pod for the Job, counted as active from now (its watch event may come later); None
        when it could not be made."""
        pod = _pod_for(job)
        name, namespace = pod["metadata"]["name"], job["metadata"]["namespace"]
        with self._lock:
            state.pods.setdefault(name, pod)
        try:
            kube.unread(kube.request_raw("POST", f"/api/v1/namespaces/{namespace}/pods", pod, api=self._api))
        except ApiException as error:
            with self._lock:
                state.pods.pop(name, None)
            if error.status != 404:  # a Job deleted meanwhile needs no Pod; anything else is tried again
                raise
            return None
        return pod

    def _finish(
        self,
        state: JobState,
        job: dict[str, Any],
        interim: str,
        final: str,
        reason: str,
        message: str,
        now: str,
    ) -> None:
        conditions = [_condition(interim, reason, message, now), _condition(final, reason, message, now)]
        update: dict[str, Any] = {
            "active": 0,
            "succeeded": state.succeeded,
            "failed": state.failed,
            "ready": 0,
            "conditions": conditions,
        }
        if final == "Complete":
            update["completionTime"] = now
        state.final = update
        self._write_final(state, job)

    def _write_final(self, state: JobState, job: dict[str, Any]) -> None:
        """Finished once written: a failed write is tried again (`_work`), and nothing decided anew."""
        if state.final is None:
            return
        self._patch(state, state.final)
        state.finished = True
        self._schedule_ttl(job)

    def _deadline_passed(self, uid: str) -> None:
        with self._lock:
            state = self._jobs.get(uid)
            if state is None:
                return
            state.deadline_passed = True
        self._queue.add(uid)

    def _stop_at_deadline(
        self, state: JobState, job: dict[str, Any], pods: dict[str, dict[str, Any]]
    ) -> None:
        deadline = job["spec"].get("activeDeadlineSeconds")
        for name, pod in pods.items():
            if _phase(pod) not in FINISHED_PHASES:
                state.counted.add(name)
                self._delete_pod(job["metadata"]["namespace"], name)
        state.failed += 1
        now = timestamps.render(timestamps.now())
        self._finish(state, job, "FailureTarget", "Failed", "DeadlineExceeded",
                     f"Job was active longer than specified deadline ({deadline}s)", now)  # fmt: skip

    def _schedule_ttl(self, job: Mapping[str, Any]) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is not None:
            self._schedule(time.monotonic() + float(ttl), "ttl", job["metadata"]["uid"])

    def _expire(self, uid: str) -> None:
        with self._lock:
            state = self._jobs.get(uid)
        if state is None:
            return
        meta = state.job["metadata"]
        try:
            self._batch.delete_namespaced_job(
                meta["name"], meta["namespace"], propagation_policy="Background"
            )
        except ApiException as error:
            if error.status != 404:
                raise

    # Writing -------------------------------------------------------------------------------------------

    def _patch(self, state: JobState, job_status: dict[str, Any]) -> None:
        meta = state.job["metadata"]
        try:
            path = f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs/{meta['name']}/status"
            body = {"status": job_status}
            kube.unread(
                kube.request_raw("PATCH", path, body, content_type=kube.STRATEGIC_MERGE_PATCH, api=self._api)
            )
            state.written.update(job_status)
        except ApiException as error:
            if error.status != 404:  # a Job deleted meanwhile simply goes away
                raise

    def _delete_pod(self, namespace: str, name: str) -> None:
        try:
            self._core.delete_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    # Timers (deadlines, TTLs, batched syncs): one thread and a heap, not a sleeping thread per Job -----

    def _schedule(self, when: float, what: str, uid: str) -> None:
        with self._wake:
            heapq.heappush(self._timers, (when, secrets.randbits(32), what, uid))
            self._wake.notify()

    def _run_timers(self) -> None:
        handlers = {"deadline": self._deadline_passed, "sync": self._sync_batched, "ttl": self._expire}
        while not self._stop.is_set():
            with self._wake:
                due = self._timers[0][0] - time.monotonic() if self._timers else None
                if due is None or due > 0:
                    self._wake.wait(timeout=due)
                    continue
                _, _, what, uid = heapq.heappop(self._timers)
            try:
                handlers[what](uid)
            except Exception:
                logger.exception("job %s timer (%s) failed", uid, what)


def _take_as_deleted(state: JobState, pod: dict[str, Any]) -> None:
    """The Pod is gone: the next reconciliation counts its end (under the controller's lock)."""
    name = pod["metadata"]["name"]
    state.pods.pop(name, None)
    state.deleted[name] = pod


def _pod_for(job: Mapping[str, Any]) -> dict[str, Any]:
    """The Pod the Job controller makes from the Job's template."""
    meta, template = job["metadata"], job["spec"]["template"]
    labels = {
        **((template.get("metadata") or {}).get("labels") or {}),
        "job-name": meta["name"],
        "batch.kubernetes.io/job-name": meta["name"],
        "controller-uid": meta["uid"],
        CONTROLLER_UID: meta["uid"],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}-{secrets.token_hex(3)[:5]}",
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": ownership.owned_by(job),
        },
        "spec": dict(template["spec"]),
    }


def failure_verdict(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> tuple[str, str]:
    """What a Job's `podFailurePolicy` says of a failed Pod: the first rule that matches decides
    (`FailJob`, `Ignore`, `Count`), with the Job controller's message; `Count` when none does
    (Kubernetes docs, "Pod failure policy")."""
    status, meta = pod.get("status") or {}, pod["metadata"]
    for index, rule in enumerate((policy or {}).get("rules") or []):
        codes = rule.get("onExitCodes")
        for container in status.get("containerStatuses") or [] if codes else []:
            code = ((container.get("state") or {}).get("terminated") or {}).get("exitCode")
            if codes.get("containerName") not in (None, container["name"]) or not code:
                continue
            if (code in (codes.get("values") or [])) == (codes.get("operator") == "In"):
                where = f"Container {container['name']} for pod {meta['namespace']}/{meta['name']}"
                return rule[
                    "action"
                ], f"{where} failed with exit code {code} matching {rule['action']} rule at index {index}"
        for wanted in rule.get("onPodConditions") or []:
            for condition in status.get("conditions") or []:
                if condition.get("type") == wanted["type"] and condition.get("status") == wanted.get(
                    "status", "True"
                ):
                    where = f"Pod {meta['namespace']}/{meta['name']}"
                    return (
                        rule["action"],
                        f"{where} has condition {wanted['type']} matching {rule['action']} rule "
                        f"at index {index}",
                    )
    return "Count", ""


def _ready(pod: Mapping[str, Any] | None) -> bool:
    """The Pod's Ready condition, which the Job controller counts in `status.ready`."""
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _phase(pod: Mapping[str, Any] | None) -> str:
    return str(((pod or {}).get("status") or {}).get("phase") or "Pending")


def _condition(kind: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def _finished(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)
