"""Records: their volume claim, and firing Triggers on their new files."""

import logging
from collections.abc import Mapping
from typing import Any

from . import firing, kube, labels, naming, ownership, timestamps

logger = logging.getLogger(__name__)


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
            "labels": {labels.MANAGED_BY: labels.MANAGER, labels.RECORD: meta["name"]},
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


def due_invocations(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every Invocation the Record's new files call for, given the Triggers of its namespace now."""
    if not firing.undispatched_files(record):
        return []
    triggers = kube.list_custom("triggers", record["metadata"]["namespace"])
    return firing.invocations_due(record, triggers)


def mark_dispatched(record: Mapping[str, Any]) -> None:
    """Note in the Record that its new files were dispatched, so no event makes them fire again."""
    dispatched = firing.undispatched_files(record)
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
