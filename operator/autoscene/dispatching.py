"""Turning a RecordFile's new content into Invocations, once, whatever repeats the event."""

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import GROUP, VERSION, events, files, firing, kube, timestamps, triggers

logger = logging.getLogger(__name__)


def dispatch(
    file: Mapping[str, Any],
    record_labels: Mapping[str, str] | None,
    namespace_triggers: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Create the Invocations this content calls for, then note it dispatched on the RecordFile.

    Idempotent: Invocation names are deterministic, so a repeated dispatch finds them there (409). When
    an Invocation cannot be created the file stays undispatched (the error propagates) and is tried
    again later; a Trigger that cannot fire gets a Warning Event and holds up nobody. Each created
    Invocation gets a `TriggerFired` Event on the Record and counts in its Trigger's status.
    """
    candidates = list(namespace_triggers)
    for name, why in firing.unusable_triggers(candidates).items():
        trigger = next(t for t in candidates if t["metadata"]["name"] == name)
        _warn_once(trigger, "TriggerUnusable", f"this Trigger cannot fire: {why}")
    due = firing.invocations_due(file, record_labels, candidates)
    created = [invocation for invocation in due if kube.create_custom("invocations", invocation)]
    meta = file["metadata"]
    _note_dispatched(meta["namespace"], meta["name"], file["spec"]["sha256"], len(due))
    for invocation in created:
        _announce(file, invocation)
    return created


def _note_dispatched(namespace: str, name: str, sha256: str, count: int) -> None:
    moment = timestamps.render_precise(timestamps.now())
    status = {"dispatchedSha256": sha256, "dispatchedAt": moment, "invocations": count}
    try:
        kube.patch_custom_status(files.PLURAL, namespace, name, status)
    except ApiException as error:
        if error.status != 404:  # a file deleted meanwhile needs no bookkeeping
            raise


def _announce(file: Mapping[str, Any], invocation: Mapping[str, Any]) -> None:
    spec, name = invocation["spec"], invocation["metadata"]["name"]
    # The Event is about the Record, identified by the file's owner reference (kubectl describe
    # matches Events by uid).
    references = file["metadata"].get("ownerReferences") or []
    owner: Mapping[str, Any] = next((ref for ref in references if ref.get("kind") == "Record"), {})
    record = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Record",
        "metadata": {
            "name": spec["record"],
            "namespace": invocation["metadata"]["namespace"],
            "uid": owner.get("uid", ""),
        },
    }
    events.post(
        record, "TriggerFired", f'Trigger "{spec["trigger"]}" fired on "{spec["file"]}": invocation {name}'
    )
    try:
        triggers.count_firing(invocation["metadata"]["namespace"], spec["trigger"], name)
    except Exception as error:  # a count is bookkeeping: the run itself is not at stake
        logger.warning("could not count the firing of %s: %s", spec["trigger"], error)


_warned: set[tuple[str, str]] = set()


def _warn_once(obj: Mapping[str, Any], reason: str, message: str) -> None:
    """One Warning per version of an object, not one per dispatch."""
    key = (obj["metadata"].get("uid", ""), obj["metadata"].get("resourceVersion", ""))
    if key not in _warned:
        _warned.add(key)
        events.post(obj, reason, message, warning=True)
