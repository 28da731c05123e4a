"""Which Invocations a file calls for: the Trigger rules, free of any I/O."""

from collections.abc import Iterable, Mapping
from typing import Any

from . import API_VERSION, files, globs, labels, naming, selectors


def invocations_due(
    file: Mapping[str, Any], record_labels: Mapping[str, str] | None, triggers: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The Invocation bodies for every Trigger that fires on this RecordFile's content, named
    deterministically: the same upload of a content always gets the same names (`naming`).

    A Trigger fires on a file when it is not suspended, selects the file's Record (by the Record's
    labels), and its glob matches the file's path. A Trigger whose glob or selector cannot be used is
    left out (see `unusable`), so it cannot hold up the others.
    """
    spec = file["spec"]
    return [
        invocation_for(trigger, spec["record"], spec, files.upload_of(file))
        for trigger in triggers
        if fires_on(trigger, record_labels, spec["path"])
    ]


def fires_on(trigger: Mapping[str, Any], record_labels: Mapping[str, str] | None, path: str) -> bool:
    """Whether the Trigger fires on a file at `path` of a Record with these labels (see
    `invocations_due`); False for a Trigger whose glob or selector cannot be used."""
    try:
        return _is_armed_for(trigger, record_labels) and files_of(trigger).matches(path)
    except ValueError:
        return False


def unusable(trigger: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why a Trigger cannot fire, as (reason, message): a glob or a label selector that does not
    parse (InvalidGlob, InvalidSelector); None when both can be used."""
    spec = trigger.get("spec") or {}
    try:
        files_of(trigger)
    except ValueError as error:
        return "InvalidGlob", str(error)
    try:
        selectors.selects(spec.get("recordSelector"), {})
    except ValueError as error:
        return "InvalidSelector", str(error)
    return None


def invocation_for(
    trigger: Mapping[str, Any], record: str, file: Mapping[str, Any], upload: str
) -> dict[str, Any]:
    """The Invocation of `trigger` on a file (a RecordFile's spec: path, sha256, addedAt, and for a
    run's output its `source`, whose chain of Actions the run carries on) as `upload` registered it
    (`files.upload_of`)."""
    trigger_name, namespace = trigger["metadata"]["name"], trigger["metadata"]["namespace"]
    action, parameters = trigger["spec"]["action"], trigger["spec"].get("parameters")
    name = naming.invocation_name(trigger_name, record, file["path"], file.get("sha256", ""), upload)
    chain = list((file.get("source") or {}).get("chain") or [])
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
            **({"parameters": dict(parameters)} if parameters else {}),
            **({"chain": chain} if chain else {}),
        },
    }


def files_of(trigger: Mapping[str, Any]) -> globs.FileFilter:
    """The files a Trigger fires on; `InvalidGlobError` when one of its globs cannot be used."""
    spec = trigger.get("spec") or {}
    return globs.file_filter(
        spec.get("fileGlob", ""), tuple(spec.get("exclude") or ()), bool(spec.get("ignoreCase", False))
    )


def _is_armed_for(trigger: Mapping[str, Any], record_labels: Mapping[str, str] | None) -> bool:
    spec = trigger.get("spec") or {}
    return not spec.get("suspend", False) and selectors.selects(spec.get("recordSelector"), record_labels)
