"""Invocations: start each one's Job once, and mirror the Job's progress into the Invocation."""

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from . import config, jobs, kube, labels, metrics, records, status, timestamps

logger = logging.getLogger(__name__)
PLURAL = "invocations"
ACTION_NOT_FOUND = "ActionNotFound"
RECORD_NOT_FOUND = "RecordNotFound"


def start(invocation: Mapping[str, Any]) -> dict[str, Any] | None:
    """Create the Invocation's Job unless it has one; the status to write, or None if nothing changed.

    A missing Action fails the Invocation until the Action appears (see `waiting_for_action`); a
    missing Record fails it for good, since the file it names cannot be in a Record made later.
    """
    meta, spec = invocation["metadata"], invocation["spec"]
    if not needs_start(invocation.get("status") or {}):
        return None
    namespace = meta["namespace"]
    action = kube.get_custom("actions", namespace, spec["action"])
    if action is None:
        return status.failed(
            ACTION_NOT_FOUND,
            f'Action "{spec["action"]}" does not exist in namespace "{namespace}"; '
            "this invocation starts as soon as it is created",
        )
    record = kube.get_custom("records", namespace, spec["record"])
    if record is None:
        return status.failed(
            RECORD_NOT_FOUND,
            f'Record "{spec["record"]}" does not exist in namespace "{namespace}"; a Record created '
            "later cannot hold this file, so create the Record, upload the file and run it again",
        )
    claim = records.claim_of(record)
    if claim is None:
        raise kopf.TemporaryError(f'Record "{spec["record"]}" has no volume yet', delay=2)
    body = jobs.build_job(invocation, action, claim, config.current().job_ttl_seconds)
    if kube.create_once(lambda: kube.batch().create_namespaced_job(namespace, body)):
        _count_dispatch(invocation)
    return {
        **status.waiting("JobCreated", f'job "{body["metadata"]["name"]}" created'),
        "jobName": body["metadata"]["name"],
        "completionTime": None,
    }


def _count_dispatch(invocation: Mapping[str, Any]) -> None:
    metrics.invocations_created.labels(invocation["spec"]["action"]).inc()
    added = (invocation["metadata"].get("annotations") or {}).get(labels.FILE_ADDED_AT)
    if added:
        waited = (timestamps.now() - timestamps.parse(added)).total_seconds()
        metrics.dispatch_latency.observe(max(waited, 0.0))


def needs_start(current: Mapping[str, Any]) -> bool:
    """No Job yet, and not finished (a run that failed for want of its Action may start later)."""
    if current.get("jobName"):
        return False
    return current.get("phase") not in status.FINISHED or current.get("reason") == ACTION_NOT_FOUND


def status_from_job(job: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The owning Invocation's name and the status its Job and Pods say, for Jobs we manage."""
    invocation = (job["metadata"].get("labels") or {}).get(labels.INVOCATION)
    if not invocation:
        return None
    namespace = job["metadata"]["namespace"]
    listing = kube.core().list_namespaced_pod(namespace, label_selector=f"job-name={job['metadata']['name']}")
    pods = [kube.sanitized(pod) for pod in listing.items]
    wanted = status.from_job(job, pods)
    if wanted["phase"] in status.FINISHED and "logTail" not in wanted:
        # Kept in the Invocation: the Job and its Pods (and their logs) are deleted after a while.
        log = _newest_log(namespace, pods)
        if log:
            wanted["logTail"] = status.log_tail(log)
    return invocation, wanted


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


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The part of `wanted` that differs from the current status (nothing to write when empty)."""
    if current.get("phase") in status.FINISHED and current.get("jobName") == wanted.get("jobName"):
        # A finished run's record is final: a late or repeated Job event must not rewrite history.
        if current.get("phase") == wanted.get("phase"):
            return {}
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def waiting_for_action(namespace: str, action: str) -> list[dict[str, Any]]:
    """The Invocations that failed because this Action did not exist yet."""
    selector = f"{labels.ACTION}={action}" if labels.is_label_value(action) else ""
    return [
        invocation
        for invocation in kube.list_custom(PLURAL, namespace, label_selector=selector)
        if invocation["spec"]["action"] == action
        and (invocation.get("status") or {}).get("reason") == ACTION_NOT_FOUND
    ]
