"""Records: their volume claim, and the totals of their files in their status."""

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import files, kube, labels, naming, ownership


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


class FileTotals:
    """Writes each Record's file totals (count, bytes, newest) into its status, at most once a second.

    Called from the operator's event loop on every RecordFile event with the live index of file sizes
    by Record; the totals are computed from the index when the write is due, so a burst of uploads
    costs one status write per Record and second, and the totals are right whatever events were lost.
    """

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self._due: set[tuple[str, str]] = set()
        self._written: dict[tuple[str, str], files.Totals] = {}

    def changed(self, namespace: str, record: str, index: Mapping[Any, Iterable[tuple[int, str]]]) -> None:
        key = (namespace, record)
        if key in self._due:
            return
        self._due.add(key)
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, lambda: loop.create_task(self._write(key, index)))

    async def _write(self, key: tuple[str, str], index: Mapping[Any, Iterable[tuple[int, str]]]) -> None:
        self._due.discard(key)
        totals = files.totals(index.get(key, ()))
        if self._written.get(key) == totals:
            return
        try:
            await asyncio.to_thread(kube.patch_custom_status, "records", key[0], key[1], totals.as_status())
        except ApiException as error:
            if error.status == 404:
                self._written.pop(key, None)  # the Record is gone
                return
            self.changed(key[0], key[1], index)  # try again a little later
            return
        self._written[key] = totals
