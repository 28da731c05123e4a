"""Invocations: start each one's Job once, and mirror the Job's progress into the Invocation."""

import logging
from collections.abc import Mapping
from typing import Any

from . import config, jobs, kube, labels, lifecycle, queueing, records, status, timestamps, transitions
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


def start(invocation: Mapping[str, Any]) -> Transition | None:
    """Create the Invocation's Job unless it has one, and write the status that says so.

    A missing Action keeps the Invocation Pending (reason ActionNotFound) until the Action appears (see
    `waiting_for_action`); a missing Record fails it for good, since the file it names cannot be in a
    Record made later. `NotReady` when the Record's volume is not there yet.
    """
    meta, spec = invocation["metadata"], invocation["spec"]
    if not needs_start(invocation.get("status") or {}):
        return None
    namespace = meta["namespace"]
    action = kube.get_custom("actions", namespace, spec["action"])
    if action is None:
        update = status.waiting(
            ACTION_NOT_FOUND,
            f'Action "{spec["action"]}" does not exist in namespace "{namespace}"; '
            "this invocation starts as soon as it is created",
        )
        return write(invocation, update)
    record = kube.get_custom("records", namespace, spec["record"])
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
    body = jobs.build_job(invocation, action, claim, config.current().job_ttl_seconds)
    job_name = body["metadata"]["name"]
    created = kube.create_once(lambda: kube.batch().create_namespaced_job(namespace, body))
    if (
        not created
        and _owner_uid(kube.sanitized(kube.batch().read_namespaced_job(job_name, namespace))) != meta["uid"]
    ):
        # A Job of that name from an earlier Invocation of the same name is still being deleted.
        raise NotReady(f'an older job "{job_name}" is still being deleted', delay=5)
    update = {**status.waiting(lifecycle.JOB_CREATED, f'job "{job_name}" created'), "jobName": job_name}
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
    """Write the status the Invocation's Job (None: gone) says, unless the run's record is final."""
    invocation = kube.get_custom(PLURAL, namespace, name)
    if invocation is None or invocation["metadata"]["uid"] != uid:
        return None
    current = invocation.get("status") or {}
    if not current.get("jobName") or current.get("phase") in status.FINISHED:
        return None
    if job is None:
        wanted = status.failed(JOB_LOST, f'job "{current["jobName"]}" was deleted before it finished')
    else:
        wanted = observed_status(job)
    return write(invocation, wanted)


def write(invocation: Mapping[str, Any], wanted: Mapping[str, Any]) -> Transition | None:
    """Write the fields of `wanted` that the lifecycle lets change, then carry out what the move sets
    off (`transitions.carry_out`); the Transition written, or None when nothing changed.

    A compare-and-swap against the latest status: a late or repeated write (a retried start, an
    old Job event) loses to a status that already moved on, instead of overwriting it.
    """
    meta = invocation["metadata"]
    seen: dict[str, Any] = {}

    def merged(current: dict[str, Any]) -> dict[str, Any]:
        seen.clear()
        seen.update(current)
        changed = lifecycle.changes(current, wanted)
        if not changed:
            return current
        now = timestamps.render(timestamps.now())
        return status.with_condition(current, {**current, **changed}, meta.get("generation"), now)

    written = kube.update_status(PLURAL, meta["namespace"], meta["name"], merged)
    if written is None:
        return None
    update = lifecycle.changes(seen, wanted)
    if not update:
        return None
    transition = Transition(written, dict(seen), update)
    transitions.carry_out(transition, start_next)
    return transition


def observed_status(job: Mapping[str, Any]) -> dict[str, Any]:
    """The status the Job and its Pods say, with the log's end once the run is over."""
    namespace = job["metadata"]["namespace"]
    listing = kube.core().list_namespaced_pod(namespace, label_selector=f"job-name={job['metadata']['name']}")
    pods = [kube.sanitized(pod) for pod in listing.items]
    wanted = status.from_job(job, pods)
    if wanted["phase"] in status.FINISHED and "logTail" not in wanted:
        # Kept in the Invocation: the Job and its Pods (and their logs) are deleted after a while.
        log = _newest_log(namespace, pods)
        if log:
            wanted["logTail"] = status.log_tail(log)
    return wanted


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


def _newest_log(namespace: str, pods: list[dict[str, Any]]) -> str:
    newest = status.newest(pods)
    if newest is None:
        return ""
    try:
        return str(
            kube.core().read_namespaced_pod_log(
                newest["metadata"]["name"],
                namespace,
                container=jobs.ACTION_CONTAINER,
                tail_lines=status.LOG_TAIL_LINES,
                limit_bytes=4 * status.LOG_TAIL_CHARS,
            )
        )
    except Exception as error:  # a log is a nice-to-have: the run's outcome does not depend on it
        logger.debug("no log for %s: %s", newest["metadata"]["name"], error)
        return ""
