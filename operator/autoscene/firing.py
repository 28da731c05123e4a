"""Which Invocations a Record's files call for: the Trigger rules, free of any I/O."""

from collections.abc import Iterable, Mapping
from typing import Any

from . import API_VERSION, globs, labels, naming, selectors


def invocations_due(record: Mapping[str, Any], triggers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Invocation bodies for every (new file, Trigger) pair that fires, named deterministically.

    Only files not yet dispatched count: a file is dispatched once, to the Triggers that exist when
    the operator first sees it, so a Trigger created later never fires on files that were already
    there. A Trigger fires on a file when it is not suspended, selects the Record, and its glob matches
    the file's path. A Trigger whose glob or selector cannot be used is left out (see
    `unusable_triggers`), so it cannot hold up the others.
    """
    files = undispatched_files(record)
    labels_of_record = record["metadata"].get("labels")
    due: list[dict[str, Any]] = []
    for trigger in triggers:
        try:
            if not _is_armed_for(trigger, labels_of_record):
                continue
            matching = [file for file in files if globs.matches(trigger["spec"]["fileGlob"], file["path"])]
        except ValueError:
            continue
        due.extend(invocation_for(trigger, record["metadata"]["name"], file) for file in matching)
    return due


def unusable_triggers(triggers: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Triggers that cannot fire, by name, with why: a glob or a label selector that does not parse."""
    unusable = {}
    for trigger in triggers:
        spec = trigger.get("spec") or {}
        try:
            globs.compile_glob(spec.get("fileGlob", ""))
            selectors.selects(spec.get("recordSelector"), {})
        except ValueError as error:
            unusable[trigger["metadata"]["name"]] = str(error)
    return unusable


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
