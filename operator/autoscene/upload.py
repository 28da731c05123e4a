"""Uploads: copy files into a Record's volume and register them in `status.files` with their sha256."""

import hashlib
import posixpath
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jobs, kube, records, timestamps

CHUNK = 1 << 20
Progress = Callable[[int], None]


class UploadError(Exception):
    """An upload that cannot be done, with a message that says why."""


@dataclass(frozen=True)
class UploadedFile:
    path: str
    size: int
    sha256: str

    def entry(self) -> dict[str, Any]:
        """The `status.files` entry that registers this file."""
        added = timestamps.render_precise(timestamps.now())
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "addedAt": added}


def record_path(name: str) -> str:
    """A path inside a Record: relative, `/`-separated, normalised, never escaping the Record."""
    if not name or name.startswith("/") or "\\" in name or name.startswith("~"):
        raise UploadError(f"{name!r} is not a relative path inside the record")
    normal = posixpath.normpath(name)
    if normal == "." or normal == ".." or normal.startswith("../") or "/../" in f"/{name}/":
        raise UploadError(f"{name!r} escapes the record: paths may not contain '..'")
    return normal


def check_source(source: Path) -> None:
    if not source.exists():
        raise UploadError(f"{source}: no such file")
    if not source.is_file():
        raise UploadError(f"{source}: not a regular file")
    try:
        with source.open("rb"):
            pass
    except OSError as error:
        raise UploadError(f"{source}: cannot be read ({error.strerror})") from error


def copy_into_folder(source: Path, files_folder: Path, path: str, progress: Progress) -> UploadedFile:
    """Copy `source` to `files_folder/path`, hashing while copying; the file appears whole or not at all."""
    destination = files_folder / path
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with (
        source.open("rb") as reader,
        tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".upload-", delete=False) as writer,
    ):
        try:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
                progress(len(chunk))
        except BaseException:
            Path(writer.name).unlink(missing_ok=True)
            raise
    shutil.move(writer.name, destination)
    destination.chmod(0o644)
    return UploadedFile(path, size, digest.hexdigest())


def plan(sources: list[Path], prefix: str = "") -> list[tuple[Path, str]]:
    """Each source with its path inside the record, all checked before a single byte is copied."""
    planned = []
    for source in sources:
        check_source(source)
        planned.append(
            (source, record_path(f"{prefix.rstrip('/')}/{source.name}" if prefix else source.name))
        )
    targets = [target for _, target in planned]
    duplicates = sorted({target for target in targets if targets.count(target) > 1})
    if duplicates:
        raise UploadError(f"two files would land on the same path in the record: {', '.join(duplicates)}")
    return planned


def record_claim(namespace: str, record: str) -> str:
    """The claim of an existing, ready Record, or a clear error."""
    body = kube.get_custom("records", namespace, record)
    if body is None:
        raise UploadError(f'record "{record}" does not exist in namespace "{namespace}"')
    claim = records.claim_of(body)
    if claim is None:
        raise UploadError(f'record "{record}" has no volume yet: is the operator running?')
    return claim


def upload_to_folder(
    volumes: Path, namespace: str, record: str, planned: list[tuple[Path, str]], progress: Progress
) -> list[UploadedFile]:
    """Copy into the Record's volume folder (the sandbox's `volumes/`) and register the files."""
    files_folder = volumes / namespace / record_claim(namespace, record) / jobs.FILES_SUBPATH
    uploaded = [copy_into_folder(source, files_folder, path, progress) for source, path in planned]
    register(namespace, record, uploaded)
    return uploaded


def register(namespace: str, record: str, uploaded: list[UploadedFile]) -> dict[str, Any]:
    """Add (or replace, by path) the files in the Record's `status.files`."""

    def with_files(current: dict[str, Any]) -> dict[str, Any]:
        files = {entry["path"]: entry for entry in current.get("files") or []}
        for file in uploaded:
            # The same content registered again is the same file: its history stays as it was.
            if files.get(file.path, {}).get("sha256") != file.sha256:
                files[file.path] = file.entry()
        return {
            **current,
            "files": sorted(files.values(), key=lambda entry: entry["path"]),
            "fileCount": len(files),
        }

    updated = kube.update_status("records", namespace, record, with_files)
    if updated is None:
        raise UploadError(f'record "{record}" disappeared during the upload')
    return updated
