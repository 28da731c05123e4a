"""Records: their volume claim, and the status (Ready condition) that says whether files can go in."""

from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import conditions, events, kube, labels, naming, ownership, timestamps

READY = "Ready"


class ClaimRefused(Exception):
    """The API server refused the Record's claim (a quota, a policy, an invalid size), or the claim
    cannot be used yet (`ClaimPending`): retry later."""


class ClaimPending(ClaimRefused):
    """The Record's claim cannot hold its files now, and may soon: `reason` ClaimNotFound (a claim the
    Record names does not exist, yet), or ClaimTerminating (the claim of a Record of the same name,
    deleted before, is still going: a claim stays while any Pod that mounted it exists, finished runs'
    Pods included; Kubernetes docs, "Storage Object in Use Protection"). Retry soon."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
    """Create the Record's claim unless it names an existing one; the claim's name either way.
    `ClaimPending` when the claim is missing or still belongs to a Record deleted before."""
    meta = record["metadata"]
    claims = f"/api/v1/namespaces/{meta['namespace']}/persistentvolumeclaims"
    named = (record["spec"]["storage"]).get("claimName")
    if not named:
        body = claim_body(record)
        kube.create_once(claims, body)
    name = str(named or body["metadata"]["name"])
    try:
        claim = kube.json_of(kube.request_raw("GET", f"{claims}/{name}"))
    except ApiException as error:
        if error.status != 404:
            raise
        raise ClaimPending(
            "ClaimNotFound",
            f'PersistentVolumeClaim "{name}" does not exist: create it, or leave out storage.claimName '
            "for a claim of the Record's own",
        ) from None
    references = claim["metadata"].get("ownerReferences") or []
    owners = [owner.get("uid") for owner in references if owner.get("kind") == "Record"]
    if claim["metadata"].get("deletionTimestamp") or (owners and meta.get("uid") not in owners):
        raise ClaimPending(
            "ClaimTerminating",
            f'PersistentVolumeClaim "{name}" is being deleted (a claim stays while a Pod that used it '
            "exists, finished runs' Pods included); files can go in once it is gone and a new one is made",
        )
    return name


def provision(record: Mapping[str, Any]) -> str:
    """Create the Record's claim (unless it names one) and write the status that says files can go in:
    phase Ready and a Ready condition (reason ClaimReady). When the API refuses the claim (403: a
    ResourceQuota or a policy; 422: an invalid request), the status says so (phase Failed, Ready False,
    reason ClaimRefused, the server's message) and `ClaimRefused` asks for a retry. The claim's name."""
    meta = record["metadata"]
    now = timestamps.render(timestamps.now())
    try:
        claim = ensure_claim(record)
    except ApiException as error:
        if error.status not in (403, 422):
            raise
        why = f"the PersistentVolumeClaim was refused: {kube.message_of(error)}"
        _not_ready(record, "Failed", "ClaimRefused", why, now)
        raise ClaimRefused(why) from error
    except ClaimPending as pending:
        _not_ready(record, "Pending", pending.reason, str(pending), now)
        raise
    said = f'files are kept on claim "{claim}"'
    ready = conditions.updated(record, READY, (conditions.TRUE, "ClaimReady", said), now)
    if ready is not None:
        status = {"claimName": claim, "phase": "Ready", "message": said, "conditions": ready}
        kube.patch_custom_status("records", meta["namespace"], meta["name"], status)
        events.post(record, "ClaimReady", f'files are kept on PersistentVolumeClaim "{claim}"')
    return claim


def _not_ready(record: Mapping[str, Any], phase: str, reason: str, why: str, now: str) -> None:
    """Ready False with `reason` and `why` in the Record's status, and a Warning Event, when that
    condition is news."""
    meta = record["metadata"]
    written = conditions.updated(record, READY, (conditions.FALSE, reason, why), now)
    if written is not None:
        status = {"phase": phase, "message": why, "conditions": written}
        kube.patch_custom_status("records", meta["namespace"], meta["name"], status)
        events.post(record, reason, why, warning=True)
