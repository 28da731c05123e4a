"""RecordFiles: one object per file of a Record, free of any I/O.

Files are objects of their own, not entries of the Record's status: a Record of 100,000 files is
100,000 small objects, each written by its own upload, instead of one object that every upload
rewrites (and that etcd's 1.5 MiB limit would cap near 8,000 files). The Record's status keeps totals.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import API_VERSION, labels, naming, ownership

PLURAL = "recordfiles"


@dataclass(frozen=True)
class Totals:
    """What a Record's status says of its files."""

    count: int
    bytes: int
    last_added_at: str | None

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"fileCount": self.count, "bytes": self.bytes}
        if self.last_added_at:
            status["lastFileAt"] = self.last_added_at
        return status


def body(
    record: Mapping[str, Any],
    path: str,
    size: int,
    sha256: str,
    added_at: str,
    uploader: str = "",
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The RecordFile of `path` in `record` (a Record body: its name, namespace and uid are used);
    `source` is the provenance of a run's output (`outputs.provenance`)."""
    meta = record["metadata"]
    spec: dict[str, Any] = {
        "record": meta["name"],
        "path": path,
        "size": size,
        "sha256": sha256,
        "addedAt": added_at,
    }
    if uploader:
        spec["uploader"] = uploader
    if source:
        spec["source"] = dict(source)
    return {
        "apiVersion": API_VERSION,
        "kind": "RecordFile",
        "metadata": {
            "name": naming.file_name(meta["name"], path),
            "namespace": meta["namespace"],
            "labels": labels.for_file(meta["name"]),
            # Created by users' uploads: blocking the Record's deletion would need rights on its finalizers.
            "ownerReferences": ownership.owned_by(record, block_owner_deletion=False),
        },
        "spec": spec,
    }


def content_changed(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec patch that registers new content at an existing path; None for the same content."""
    if existing["spec"].get("sha256") == wanted["spec"]["sha256"]:
        return None  # the same content registered again is the same file: its history stays
    change = {
        key: wanted["spec"][key] for key in ("size", "sha256", "addedAt", "uploader") if key in wanted["spec"]
    }
    # New content replaces the old one's provenance, or drops it (None: a merge patch's deletion).
    change["source"] = wanted["spec"].get("source")
    return change


def chain_of(file: Mapping[str, Any]) -> list[str]:
    """The Actions this file's content went through, oldest first (none for an upload)."""
    return list(((file.get("spec") or {}).get("source") or {}).get("chain") or [])


def upload_of(file: Mapping[str, Any]) -> str:
    """Which upload of its content a RecordFile holds: its uid and generation. Registering the same
    content again changes nothing (`content_changed`), so it keeps both; new content bumps the
    generation (the API server does on every change of `spec`), and a file registered anew (after its
    Record was deleted with its volume) has another uid."""
    meta = file["metadata"]
    return f"{meta.get('uid', '')}/{meta.get('generation', '')}"


def needs_dispatch(file: Mapping[str, Any]) -> bool:
    """Content not yet turned into Invocations (each content is dispatched once)."""
    return (file.get("status") or {}).get("dispatchedSha256") != file["spec"]["sha256"]


def totals(files: Iterable[tuple[int, str]]) -> Totals:
    """Count, bytes and newest registration of (size, addedAt) pairs."""
    count, size, last = 0, 0, None
    for file_size, added_at in files:
        count += 1
        size += file_size
        if last is None or added_at > last:  # RFC 3339 in UTC sorts as text
            last = added_at
    return Totals(count, size, last)


def record_status(files: Iterable[tuple[int, str]]) -> dict[str, Any]:
    """The Record status fields that sum up its files' (size, addedAt) pairs."""
    return totals(files).as_status()
