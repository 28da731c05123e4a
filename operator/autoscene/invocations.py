"""Invocations: start each one's Job once, and mirror the Job's progress into the Invocation."""

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from . import (
    config,
    jobs,
    kube,
    labels,
    lifecycle,
    logkeeping,
    outputs,
    podwatch,
    queueing,
    records,
    status,
    templates,
    timestamps,
    transitions,
)
from .transitions import Transition

logger = logging.getLogger(__name__)
PLURAL = "invocations"
ACTION_NOT_FOUND = "ActionNotFound"
RECORD_NOT_FOUND = "RecordNotFound"
JOB_LOST = "JobLost"


class NotReady(Exception):
    """The run cannot start yet for a reason that passes by itself; try again after `delay` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class Lookup(Protocol):
    """Where `start` reads an Action and a Record (by namespace and name; None when missing)."""

    def action(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def record(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


class ApiLookup:
    """Read from the API server."""

    def action(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return kube.get_custom("actions", namespace, name)

    def record(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return kube.get_custom("records", namespace, name)


FROM_API = ApiLookup()


def start(invocation: Mapping[str, Any], lookup: Lookup = FROM_API) -> Transition | None:
    """Create the Invocation's Job unless it has one, and write the status that says so.

    A missing Action keeps the Invocation Pending (reason ActionNotFound) until the Action appears (see
    `waiting_for_action`); a missing Record fails it for good, since the file it names cannot be in a
    Record made later. `NotReady` when the Record's volume is not there yet.
    """
    meta, spec = invocation["metadata"], invocation["spec"]
    if not needs_start(invocation.get("status") or {}):
        return None
    namespace = meta["namespace"]
    stop = outputs.chain_stop(
        spec.get("chain") or [], spec["action"], f'"{spec["file"]}" of record "{spec["record"]}"'
    )
    if stop is not None:
        return write(invocation, {**status.failed(*stop), "chainDepth": len(spec.get("chain") or [])})
    action = lookup.action(namespace, spec["action"])
    if action is None:
        update = status.waiting(
            ACTION_NOT_FOUND,
            f'Action "{spec["action"]}" does not exist in namespace "{namespace}"; '
            "this invocation starts as soon as it is created",
        )
        return write(invocation, update)
    record = lookup.record(namespace, spec["record"])
    if record is None:
        update = status.failed(
            RECORD_NOT_FOUND,
            f'Record "{spec["record"]}" does not exist in namespace "{namespace}"; a Record created '
            "later cannot hold this file, so create the Record, upload the file and run it again",
        )
        return write(invocation, update)
    claim = records.claim_of(record)
    if claim is None:
        raise NotReady(f'Record "{spec["record"]}" has no volume yet', delay=2)
    limit = int(action["spec"].get("concurrency") or 0)
    if not limit:
        return _run(invocation, action, claim)
    # Taking a slot, creating the Job and noting it in the status happen as one step, so that no
    # recount (`Slots.recount`) sees a slot taken but not yet visible in the API.
    with SLOTS.lock:
        place = SLOTS.acquire(invocation, limit)
        if place is not None:
            return write(invocation, queueing.queued(spec["action"], limit, place))
        try:
            return _run(invocation, action, claim)
        except Exception:
            SLOTS.release(namespace, spec["action"], meta["name"])
            raise


def _run(invocation: Mapping[str, Any], action: Mapping[str, Any], claim: str) -> Transition | None:
    """Create the Invocation's Job (once), and write the status that says so."""
    meta = invocation["metadata"]
    namespace = meta["namespace"]
    spec = invocation["spec"]
    try:
        declared = action["spec"].get("parameters") or []
        parameters = templates.resolve(declared, ("the Invocation", spec.get("parameters")))
        values = templates.context(parameters, spec["record"], spec["file"], meta["name"])
        body = jobs.build_job(invocation, action, claim, config.current().job_ttl_seconds, values)
        destination = outputs.destination(action["spec"], values)
    except templates.ParameterError as error:
        return write(invocation, status.failed(templates.INVALID_PARAMETERS, str(error)))
    job_name = body["metadata"]["name"]
    created = kube.create_once(f"/apis/batch/v1/namespaces/{namespace}/jobs", body)
    if (
        not created
        and _owner_uid(kube.sanitized(kube.batch().read_namespaced_job(job_name, namespace))) != meta["uid"]
    ):
        # A Job of that name from an earlier Invocation of the same name is still being deleted.
        raise NotReady(f'an older job "{job_name}" is still being deleted', delay=5)
    update = {
        **status.waiting(lifecycle.JOB_CREATED, f'job "{job_name}" created'),
        "jobName": job_name,
        "parameters": parameters,
        "image": action["spec"]["image"],
        "chainDepth": len(spec.get("chain") or []),
    }
    if destination is not None:
        update["outputRecord"] = destination.as_status()
    return write(invocation, {**update, "completionTime": None})


def start_next(namespace: str, action: str, finished: str) -> Transition | None:
    """A run of `action` is over: start the oldest run queued behind it, if any."""
    following = SLOTS.release(namespace, action, finished)
    if following is None:
        return None
    invocation = kube.get_custom(PLURAL, namespace, following)
    if invocation is None:  # deleted while it waited: its turn passes on
        return start_next(namespace, action, following)
    return start(invocation)


def start_queued(namespace: str, action: Mapping[str, Any]) -> list[Transition]:
    """Start the Action's queued runs while it has free slots (the reconciliation pass's repair)."""
    limit = int((action.get("spec") or {}).get("concurrency") or 0)
    name = action["metadata"]["name"]
    runs = list_runs(namespace, name)
    waiting = sorted(
        (run for run in runs if (run.get("status") or {}).get("phase") == status.QUEUED),
        key=lambda run: run["metadata"].get("creationTimestamp", ""),
    )
    started = []
    SLOTS.recount(namespace, name)
    for run in waiting:
        if limit and SLOTS.holding(namespace, name) >= limit:
            break
        transition = start(run)
        if transition is not None:
            started.append(transition)
    return started


def list_runs(namespace: str, action: str) -> list[dict[str, Any]]:
    """Every Invocation of the Action in the namespace (by the label the operator sets)."""
    return kube.list_custom(PLURAL, namespace, label_selector=f"{labels.ACTION}={labels.value_of(action)}")


SLOTS = queueing.Slots(list_runs)


def needs_start(current: Mapping[str, Any]) -> bool:
    """No Job yet, and not finished."""
    return not current.get("jobName") and not lifecycle.is_finished(current)


def sync_with_job(namespace: str, job: Mapping[str, Any] | None, name: str, uid: str) -> Transition | None:
    """Write the status the Invocation's Job (None: gone) says, unless the run's record is final (or the
    Invocation of that name is another one than the Job's owner `uid`). `NotReady` when the Job ended
    before the run's start (its `jobName`) was written: the caller tries again shortly."""
    observed: dict[str, Any] = {}

    def wanted(current: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if lifecycle.is_finished(current):
            return None
        if not current.get("jobName"):
            if job is not None and status.job_ended(job) is not None:
                # A quick Job can end before its start is written (a write retried after a failure):
                # its last event must not be dropped, or the run would wait for the next periodic pass.
                _LATEST.pop((namespace, name), None)
                raise NotReady(f'its job "{job["metadata"]["name"]}" ended before its start was written', 1)
            return None
        if current.get("reason") == outputs.REGISTERING:
            return None  # the run's Job is done; its publish Job says how the run ends
        if job is None:
            return status.failed(JOB_LOST, f'job "{current["jobName"]}" was deleted before it finished')
        if not observed:  # read the Job's Pods once, and only for a run that is not final
            observed.update(observed_status(job, logs if config.current().keep_logs else None))
        return outputs.registering(current, observed)

    logs: list[bytes] = []
    written = write({"metadata": {"namespace": namespace, "name": name, "uid": uid}}, wanted)
    claim = claim_of_job(job) if job is not None else None
    if written is not None and logs and claim:
        record = written.invocation["spec"]["record"]
        logkeeping.KEEPER.keep(logkeeping.KeptLog(namespace, record, claim, name, logs[0]))
    return written


Wanted = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any] | None]
# The Invocations this process wrote last and that are not final yet, as written: the next write of
# one starts from it instead of reading it again (a compare-and-swap, so a stale copy costs a retry).
_LATEST: dict[tuple[str, str], dict[str, Any]] = {}


def cancel(invocation: Mapping[str, Any]) -> Transition | None:
    """Stop the run on request: mark it Cancelled (final: the slot it held goes to the next queued run),
    keep the log it wrote so far as a finished run's is kept, then delete its Job and the Job's Pods.
    A run already over stays as it was."""
    if lifecycle.is_finished(invocation.get("status") or {}):
        return None
    transition = write(invocation, status.cancelled("cancelled on request (annotation autoscene.io/cancel)"))
    job = ((transition.invocation if transition else invocation).get("status") or {}).get("jobName")
    if transition is not None and job:
        if config.current().keep_logs:
            _keep_log_so_far(transition.invocation, job)
        try:
            kube.batch().delete_namespaced_job(
                job, invocation["metadata"]["namespace"], propagation_policy="Background"
            )
        except ApiException as error:
            if error.status != 404:
                raise
    return transition


def _keep_log_so_far(invocation: Mapping[str, Any], job_name: str) -> None:
    """Keep what a run's action wrote until now (`logkeeping`), before its Job and Pods go."""
    meta = invocation["metadata"]
    job = read_job(meta["namespace"], job_name)
    if job is None:
        return
    log = newest_log(meta["namespace"], job_pods(meta["namespace"], job_name), jobs.ACTION_CONTAINER)
    claim = claim_of_job(job)
    if log and claim:
        kept = logkeeping.KeptLog(meta["namespace"], invocation["spec"]["record"], claim, meta["name"], log)
        logkeeping.KEEPER.keep(kept)


def forget(namespace: str, name: str) -> None:
    """The Invocation is gone: drop what this process remembered of it."""
    _LATEST.pop((namespace, name), None)


def write(invocation: Mapping[str, Any], wanted: Wanted) -> Transition | None:
    """Write the fields of `wanted` (a status, or a function of the current status giving one, or None
    for no write) that the lifecycle lets change, then carry out what the move sets off
    (`transitions.carry_out`); the Transition written, or None when nothing changed.

    A compare-and-swap against the latest status: a late or repeated write (a retried start, an
    old Job event) loses to a status that already moved on, instead of overwriting it. Only the
    Invocation of `invocation`'s uid, when it gives one, is written.
    """
    meta = invocation["metadata"]
    seen: dict[str, Any] = {}

    def merged(latest: Mapping[str, Any]) -> dict[str, Any] | None:
        if meta.get("uid") and latest["metadata"]["uid"] != meta["uid"]:
            return None
        current = dict(latest.get("status") or {})
        target = wanted(current) if callable(wanted) else wanted
        changed = lifecycle.changes(current, target) if target is not None else {}
        if not changed:
            return None
        seen.update(previous=current, update=changed)
        now = timestamps.render(timestamps.now())
        return status.with_condition(
            current, {**current, **changed}, latest["metadata"].get("generation"), now
        )

    key = (meta["namespace"], meta["name"])
    # The freshest copy at hand: one the caller read with its status, else the last one written here,
    # else the caller's (a new Invocation's watch event: it has no status yet); else one is read.
    known = invocation if "status" in invocation and meta.get("resourceVersion") else _LATEST.get(key)
    if known is None and meta.get("resourceVersion") and "spec" in invocation:
        known = invocation
    written = kube.update_status(PLURAL, meta["namespace"], meta["name"], merged, known=known)
    if written is None:
        return None
    if lifecycle.is_finished(written.get("status") or {}):
        _LATEST.pop(key, None)
    else:
        _LATEST[key] = written
    transition = Transition(written, seen["previous"], seen["update"])
    transitions.carry_out(transition, start_next)
    return transition


def observed_status(job: Mapping[str, Any], logs: list[bytes] | None = None) -> dict[str, Any]:
    """The status the Job and its Pods say, with the log's end once the run is over (the log itself,
    its last `logkeeping.KEPT_BYTES`, appended to `logs` when given)."""
    namespace, pods = job["metadata"]["namespace"], []
    if status.needs_pods(job):
        pods = job_pods(namespace, job["metadata"]["name"], ended=status.job_ended(job) is not None)
    wanted = status.from_job(job, pods)
    if wanted["phase"] in status.FINISHED and ("logTail" not in wanted or logs is not None):
        # Kept in the Invocation: the Job and its Pods (and their logs) are deleted after a while.
        log = newest_log(namespace, pods, jobs.ACTION_CONTAINER)
        if log and "logTail" not in wanted:
            wanted["logTail"] = status.log_tail(log.decode(errors="replace"))
        if log and logs is not None:
            logs.append(log)
    return wanted


def resync(namespace: str, job_name: str) -> Transition | None:
    """Mirror the Job of that name into its Invocation again (read afresh: its Pod changed, not it)."""
    job = read_job(namespace, job_name)
    if job is None:
        return None
    owner = owner_of(job)
    return None if owner is None else sync_with_job(namespace, job, *owner)


def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    """The Job as the API holds it now, or None when it does not exist."""
    try:
        return kube.sanitized(kube.batch().read_namespaced_job(name, namespace))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def finished_uids(namespaces: Sequence[str]) -> set[str]:
    """The uids of the Invocations of `namespaces` (empty: all) whose run is final, listed a page at
    a time."""
    scopes: Sequence[str | None] = list(namespaces) or [None]
    return {
        invocation["metadata"]["uid"]
        for scope in scopes
        for page in kube.pages_of_custom(PLURAL, scope)
        for invocation in page
        if lifecycle.is_finished(invocation.get("status") or {})
    }


def owner_of(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (name, uid) of the Invocation that controls this Job, if one does."""
    for reference in job["metadata"].get("ownerReferences") or []:
        if reference.get("kind") == "Invocation" and reference.get("controller"):
            return reference["name"], reference["uid"]
    return None


def waiting_for_action(namespace: str, action: str) -> list[dict[str, Any]]:
    """The Invocations that failed because this Action did not exist yet."""
    selector = f"{labels.ACTION}={action}" if labels.is_label_value(action) else ""
    return [
        invocation
        for invocation in kube.list_custom(PLURAL, namespace, label_selector=selector)
        if invocation["spec"]["action"] == action
        and (invocation.get("status") or {}).get("reason") == ACTION_NOT_FOUND
    ]


def _owner_uid(job: Mapping[str, Any]) -> str | None:
    owner = owner_of(job)
    return owner[1] if owner else None


def job_pods(namespace: str, job: str, ended: bool = False) -> list[dict[str, Any]]:
    """The Pods of a Job: from the operator's watch of Pods (`podwatch`), else listed by the
    `job-name` label the Job controller sets. For a Job that `ended`, the watch's copy serves only when
    its newest Pod is seen terminated: the Job's event may overtake its Pod's."""
    known = podwatch.PODS.pods_of(namespace, job)
    if known is not None and (not ended or status.has_terminated(status.newest(known))):
        return known
    listed = kube.core().list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    return [kube.sanitized(pod) for pod in listed]


def newest_log(
    namespace: str, pods: list[dict[str, Any]], container: str, limit: int = logkeeping.KEPT_BYTES
) -> bytes:
    """The end of the newest Pod's log of `container` (its last `limit` bytes, `logkeeping.bounded`);
    empty when there is none."""
    newest = status.newest(pods)
    if newest is None:
        return b""
    try:
        path = f"/api/v1/namespaces/{namespace}/pods/{newest['metadata']['name']}/log"
        response = kube.request_raw("GET", path, query={"container": container})
        try:
            return logkeeping.bounded(response.stream(1 << 16), limit)
        finally:
            response.release_conn()
    except Exception as error:  # a log is a nice-to-have: the run's outcome does not depend on it
        logger.debug("no log for %s: %s", newest["metadata"]["name"], error)
        return b""


def claim_of_job(job: Mapping[str, Any]) -> str | None:
    """The Record claim a run's Job mounts (`jobs.build_job`)."""
    for volume in job["spec"]["template"]["spec"].get("volumes") or []:
        if volume.get("persistentVolumeClaim"):
            return str(volume["persistentVolumeClaim"]["claimName"])
    return None
