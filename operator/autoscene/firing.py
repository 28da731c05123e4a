"""Which Invocations a Record's files call for: the Trigger rules, free of any I/O."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from . import API_VERSION, globs, labels, naming, selectors, timestamps


def invocations_due(record: Mapping[str, Any], triggers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Invocation bodies for every (file, Trigger) pair that fires, named deterministically.

    Only files not yet dispatched count. A Trigger fires on a file when it is not suspended, selects
    the Record, its glob matches the file's path, and the file was added no earlier than the Trigger's
    creation (second precision, as the API server keeps it): a Trigger never fires on files that were
    there before it.
    """
    record_meta = record["metadata"]
    files = undispatched_files(record)
    due = []
    for trigger in triggers:
        if not _is_armed_for(trigger, record_meta.get("labels")):
            continue
        created = timestamps.parse(trigger["metadata"]["creationTimestamp"])
        pattern = trigger["spec"]["fileGlob"]
        for file in files:
            if globs.matches(pattern, file["path"]) and _added_since(file, created):
                due.append(invocation_for(trigger, record_meta["name"], file))
    return due


def undispatched_files(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [file for file in (record.get("status") or {}).get("files") or [] if not file.get("dispatchedAt")]


def mark_dispatched(
    current_status: Mapping[str, Any], dispatched: Iterable[Mapping[str, Any]], moment: str
) -> dict[str, Any]:
    """The Record status with these files (same path and content) marked as dispatched at `moment`."""
    done = {(file["path"], file.get("sha256")) for file in dispatched}
    files = [
        {**file, "dispatchedAt": moment} if (file["path"], file.get("sha256")) in done else file
        for file in current_status.get("files") or []
    ]
    return {**current_status, "files": files}


def invocation_for(trigger: Mapping[str, Any], record: str, file: Mapping[str, Any]) -> dict[str, Any]:
    trigger_name, namespace = trigger["metadata"]["name"], trigger["metadata"]["namespace"]
    action = trigger["spec"]["action"]
    name = naming.invocation_name(trigger_name, record, file["path"], file.get("sha256", ""))
    return {
        "apiVersion": API_VERSION,
        "kind": "Invocation",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels.for_invocation(action=action, record=record, trigger=trigger_name),
            "annotations": {labels.FILE_ADDED_AT: file.get("addedAt", "")},
        },
        "spec": {
            "action": action,
            "record": record,
            "file": file["path"],
            "sha256": file.get("sha256", ""),
            "trigger": trigger_name,
        },
    }


def _is_armed_for(trigger: Mapping[str, Any], record_labels: Mapping[str, str] | None) -> bool:
    spec = trigger.get("spec") or {}
    return not spec.get("suspend", False) and selectors.selects(spec.get("recordSelector"), record_labels)


def _added_since(file: Mapping[str, Any], created: datetime) -> bool:
    added = file.get("addedAt")
    return added is not None and timestamps.parse(added) >= created
