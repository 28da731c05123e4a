"""Turning a RecordFile's new content into Invocations, once, whatever repeats the event."""

from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import GROUP, VERSION, events, files, firing, kube, timestamps


def dispatch(
    file: Mapping[str, Any],
    record_labels: Mapping[str, str] | None,
    namespace_triggers: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Create the Invocations this content calls for, then note it dispatched on the RecordFile.

    Idempotent: Invocation names are deterministic, so a repeated dispatch finds them there (409). When
    an Invocation cannot be created the file stays undispatched (the error propagates) and is tried
    again later; a Trigger that cannot fire holds up nobody (its Ready condition says why).
    """
    due = firing.invocations_due(file, record_labels, namespace_triggers)
    created = [invocation for invocation in due if kube.create_custom("invocations", invocation)]
    meta = file["metadata"]
    _note_dispatched(meta["namespace"], meta["name"], file["spec"]["sha256"], len(due))
    return created


def _note_dispatched(namespace: str, name: str, sha256: str, count: int) -> None:
    moment = timestamps.render_precise(timestamps.now())
    status = {"dispatchedSha256": sha256, "dispatchedAt": moment, "invocations": count}
    try:
        kube.patch_custom_status(files.PLURAL, namespace, name, status)
    except ApiException as error:
        if error.status != 404:  # a file deleted meanwhile needs no bookkeeping
            raise


def announce_firing(invocation: Mapping[str, Any], record_uid: str) -> None:
    """A `TriggerFired` Event on the Record (kubectl describe matches Events by the Record's uid),
    posted once the Invocation exists: from its creation handler, which kopf retries until done."""
    spec, meta = invocation["spec"], invocation["metadata"]
    record = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Record",
        "metadata": {"name": spec["record"], "namespace": meta["namespace"], "uid": record_uid},
    }
    message = f'Trigger "{spec["trigger"]}" fired on "{spec["file"]}": invocation {meta["name"]}'
    events.post(record, "TriggerFired", message)
