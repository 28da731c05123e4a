"""Records: their volume claim, and firing Triggers on their new files."""

from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import events, firing, kube, labels, naming, ownership, timestamps


def claim_of(record: Mapping[str, Any]) -> str | None:
    """The PersistentVolumeClaim holding the Record's files, once known."""
    storage = (record.get("spec") or {}).get("storage") or {}
    return storage.get("claimName") or (record.get("status") or {}).get("claimName")


def claim_body(record: Mapping[str, Any]) -> dict[str, Any]:
    """The claim the operator creates for a Record that does not name an existing one."""
    meta, storage = record["metadata"], record["spec"]["storage"]
    spec: dict[str, Any] = {
        # Uploads and every Job of the Record mount it, possibly on different nodes at once.
        "accessModes": [storage.get("accessMode") or "ReadWriteMany"],
        "resources": {"requests": {"storage": storage["size"]}},
    }
    if storage.get("storageClassName"):
        spec["storageClassName"] = storage["storageClassName"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": naming.claim_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels.for_claim(meta["name"]),
            "ownerReferences": ownership.owned_by(record),
        },
        "spec": spec,
    }


def ensure_claim(record: Mapping[str, Any]) -> str:
    """Create the Record's claim unless it names an existing one; the claim's name either way."""
    existing = (record["spec"]["storage"]).get("claimName")
    if existing:
        return str(existing)
    body = claim_body(record)
    namespace = record["metadata"]["namespace"]
    kube.create_once(lambda: kube.core().create_namespaced_persistent_volume_claim(namespace, body))
    return str(body["metadata"]["name"])


def dispatch(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Create the Invocations the Record's new files call for, then mark those files dispatched.

    Idempotent: Invocation names are deterministic, so a repeated dispatch finds them there (409). A
    file whose Invocation could not be created stays undispatched and is tried again later; a Trigger
    that cannot fire (a glob that does not parse) gets a Warning Event and holds up nobody.
    """
    files = firing.undispatched_files(record)
    if not files or record["metadata"].get("deletionTimestamp"):
        return []
    namespace = record["metadata"]["namespace"]
    triggers = kube.list_custom("triggers", namespace)
    for trigger in triggers:
        why = firing.unusable_triggers([trigger]).get(trigger["metadata"]["name"])
        if why:
            _warn_once(trigger, "TriggerUnusable", f"this Trigger cannot fire: {why}")
    created, undone = [], set()
    for invocation in firing.invocations_due(record, triggers):
        try:
            if kube.create_custom("invocations", invocation):
                created.append(invocation)
        except ApiException as error:
            undone.add(invocation["spec"]["file"])
            events.post(
                record, "DispatchFailed", f"{invocation['spec']['file']}: {error.reason}", warning=True
            )
    mark_dispatched(record, [file for file in files if file["path"] not in undone])
    return created


def mark_dispatched(record: Mapping[str, Any], dispatched: list[Mapping[str, Any]]) -> None:
    """Note in the Record that these files were dispatched, so no later event makes them fire again."""
    if not dispatched:
        return
    moment = timestamps.render_precise(timestamps.now())
    meta = record["metadata"]
    kube.update_status(
        "records",
        meta["namespace"],
        meta["name"],
        lambda current: firing.mark_dispatched(current, dispatched, moment),
    )


_warned: set[tuple[str, str]] = set()


def _warn_once(obj: Mapping[str, Any], reason: str, message: str) -> None:
    """One Warning per version of an object, not one per dispatch."""
    key = (obj["metadata"].get("uid", ""), obj["metadata"].get("resourceVersion", ""))
    if key not in _warned:
        _warned.add(key)
        events.post(obj, reason, message, warning=True)
