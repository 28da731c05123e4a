"""Records: their volume claim."""

from collections.abc import Mapping
from typing import Any

from . import kube, labels, naming, ownership


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
