"""Registering a succeeded run's outputs in its output Record (`outputs` holds the rules): the Record
made when missing, the publish Job, and the RecordFiles made from what that Job reports."""

import logging
import sys
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from rich import filesize

from . import (
    GROUP,
    VERSION,
    config,
    events,
    files,
    invocations,
    kube,
    labels,
    outputs,
    records,
    status,
    timestamps,
    upload,
)
from .invocations import NotReady
from .transitions import Transition

logger = logging.getLogger(__name__)


def start(invocation: Mapping[str, Any]) -> Transition | None:
    """Create the output Record when missing, then the publish Job (once). `NotReady` while the
    output Record has no volume yet."""
    meta, spec, current = invocation["metadata"], invocation["spec"], invocation.get("status") or {}
    if current.get("reason") != outputs.REGISTERING:
        return None
    namespace = meta["namespace"]
    target = outputs.Destination.from_status(current["outputRecord"])
    source = kube.get_custom("records", namespace, spec["record"])
    if source is None or (source_claim := records.claim_of(source)) is None:
        return _fail(invocation, f'its Record "{spec["record"]}" is gone')
    record = kube.get_custom("records", namespace, target.record)
    if record is None:
        kube.create_custom("records", outputs.record_body(source, target.record, _claim_class(source)))
        raise NotReady(f'record "{target.record}" was created for the outputs; waiting for its volume', 2)
    target_claim = records.claim_of(record)
    if target_claim is None:
        raise NotReady(f'record "{target.record}" has no volume yet', 2)
    body = outputs.publish_job(
        invocation, target, source_claim, target_claim, config.current().job_ttl_seconds
    )
    kube.create_once(f"/apis/batch/v1/namespaces/{namespace}/jobs", body)
    job_name = body["metadata"]["name"]

    def noted(latest: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if latest.get("reason") != outputs.REGISTERING:
            return None
        return {"outputRecord": {**latest["outputRecord"], "jobName": job_name}}

    return invocations.write(invocation, noted)


def sync_with_publish_job(
    namespace: str, job: Mapping[str, Any] | None, name: str, uid: str
) -> Transition | None:
    """The publish Job ended (or vanished): register what it copied and end the run Succeeded, or fail
    it with the Job's own words."""
    invocation = kube.get_custom(invocations.PLURAL, namespace, name)
    if invocation is None or invocation["metadata"]["uid"] != uid:
        return None
    current = invocation.get("status") or {}
    if current.get("reason") != outputs.REGISTERING:
        return None
    target_name = current["outputRecord"]["name"]
    if job is None:
        return _fail(invocation, "its publish job was deleted before it finished")
    ended = status.job_ended(job)
    if ended is None:
        return None
    # The whole log: it lists every file copied, however many.
    pods = invocations.job_pods(namespace, job["metadata"]["name"], ended=True)
    log = invocations.newest_log(namespace, pods, outputs.PUBLISH_CONTAINER, limit=sys.maxsize).decode()
    if ended == "Failed":
        last = status.log_tail(log).splitlines()[-1:] or ["no log"]
        return _fail(invocation, f'copying them into record "{target_name}" failed: {last[0]}')
    try:
        copied = outputs.published(log)
        total = register(invocation, outputs.Destination.from_status(current["outputRecord"]), copied)
    except (outputs.OutputsError, upload.UploadError) as error:
        return _fail(invocation, str(error))
    now = timestamps.render(timestamps.now())
    done: dict[str, Any] = {
        "phase": status.SUCCEEDED,
        "reason": "Completed",
        "message": f"{len(copied)} output file(s) ({filesize.decimal(total)}) registered in record "
        f'"{target_name}"',
        "completionTime": now,
        "outputRecord": {**current["outputRecord"], "fileCount": len(copied), "bytes": total},
    }
    if current.get("startTime"):
        elapsed = timestamps.parse(now) - timestamps.parse(current["startTime"])
        done["duration"] = timestamps.human_duration(elapsed.total_seconds())
    return invocations.write(invocation, done)


def register(
    invocation: Mapping[str, Any], target: outputs.Destination, copied: list[outputs.PublishedFile]
) -> int:
    """RecordFiles for the copied files, with their provenance. In modes overwrite and replace, the
    files this run took the place of (`Destination.replaced_by`) and did not write again are
    unregistered (the Job removed them), and when some of them came from another source file, a
    Warning Event says so: two files of the source Record write the same outputs. Their total bytes."""
    namespace = invocation["metadata"]["namespace"]
    source = outputs.provenance(invocation, (invocation.get("status") or {}).get("image", ""))
    uploaded = [upload.UploadedFile(target.path_of(file.path), file.size, file.sha256) for file in copied]
    replaced = []
    if target.mode != outputs.ADD:
        replaced_by_this_run = target.replaced_by(file.path for file in copied)
        selector = f"{labels.RECORD}={labels.value_of(target.record)}"
        replaced = [
            existing
            for existing in kube.list_custom(files.PLURAL, namespace, label_selector=selector)
            if existing["spec"]["record"] == target.record and replaced_by_this_run(existing["spec"]["path"])
        ]
    upload.register(namespace, target.record, uploaded, source=source)
    kept = {file.path for file in uploaded}
    for existing in replaced:
        if existing["spec"]["path"] not in kept:
            _delete_file(namespace, existing["metadata"]["name"])
    _warn_of_other_sources(invocation, replaced)
    return sum(file.size for file in copied)


def _warn_of_other_sources(invocation: Mapping[str, Any], replaced: list[dict[str, Any]]) -> None:
    spec = invocation["spec"]
    made_elsewhere = {
        str(made["file"]): existing["spec"]["path"]
        for existing in replaced
        if (made := existing["spec"].get("source") or {})
        and (made.get("record"), made.get("file")) != (spec["record"], spec["file"])
    }
    others = sorted(made_elsewhere)
    if others:
        example = made_elsewhere[others[0]]
        events.post(
            invocation,
            "OutputsReplaced",
            f"the outputs of {spec['file']} took the place of those made from {', '.join(others[:3])}"
            f"{' and more' if len(others) > 3 else ''} (e.g. {example}): they write the same paths",
            warning=True,
        )


def _fail(invocation: Mapping[str, Any], why: str) -> Transition | None:
    return invocations.write(
        invocation, status.failed(outputs.NOT_REGISTERED, f"the outputs were not registered: {why}")
    )


def _claim_class(record: Mapping[str, Any]) -> str | None:
    """The storage class of the existing claim a Record names, if it names one."""
    claim = ((record.get("spec") or {}).get("storage") or {}).get("claimName")
    if not claim:
        return None
    try:
        found = kube.core().read_namespaced_persistent_volume_claim(claim, record["metadata"]["namespace"])
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found.spec.storage_class_name


def _delete_file(namespace: str, name: str) -> None:
    try:
        kube.custom().delete_namespaced_custom_object(GROUP, VERSION, namespace, files.PLURAL, name)
    except ApiException as error:
        if error.status != 404:
            raise
