"""Deterministic names, so that a repeated event or a restart never creates a second object."""

import hashlib
import re
import secrets

# Job names become the `job-name` label (63 characters at most) and the Job controller appends a
# 6-character suffix for its Pods, so invocation (and Job) names stay within 52 characters.
MAX_INVOCATION_NAME = 52
MAX_OBJECT_NAME = 253
_HASH_LENGTH = 10


def invocation_name(trigger: str, record: str, path: str, sha256: str, upload: str) -> str:
    """The one name of the run of `trigger` on this content of `path` in `record`, as registered by
    `upload` (`files.upload_of`: its RecordFile's uid and generation).

    Readable parts (trigger, file stem) first, then a hash of all five inputs that makes it unique:
    the same content registered again keeps its name (the RecordFile does not change), so it never
    runs twice; new content, the old content back after another, or the file registered anew (its
    Record deleted and made again, with a fresh volume) is a new upload, and gets a new name.
    """
    digest = _digest(trigger, record, path, sha256, upload)
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    room = MAX_INVOCATION_NAME - _HASH_LENGTH - 1
    readable = dns_label(f"{trigger}-{stem}")[:room].strip("-")
    return f"{readable}-{digest}" if readable else digest


def dns_label(text: str) -> str:
    """Lower-case `text` to a DNS-1123 label fragment: [a-z0-9-], no leading or trailing dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def claim_name(record: str) -> str:
    """The PersistentVolumeClaim the operator creates for a Record's files (a DNS subdomain)."""
    return fitted(f"record-{record}", MAX_OBJECT_NAME)


def file_name(record: str, path: str) -> str:
    """The RecordFile object of `path` in `record`: readable parts, then a hash of both that makes it
    unique (two paths that read alike, e.g. `a b.mp4` and `a-b.mp4`, get different names)."""
    digest = _digest(record, path)
    room = MAX_OBJECT_NAME - 2 * (_HASH_LENGTH + 1)
    readable = f"{dns_label(record)[: room // 4]}-{dns_label(path)}"[:room].strip("-")
    return f"{readable}-{digest}" if readable else digest


def fitted(name: str, limit: int) -> str:
    """`name` when it is within `limit` characters; else its first characters and a hash of all of
    it, so that two long names never end up the same (Kubernetes limits: DNS labels 63, label values
    63, DNS subdomains 253)."""
    if len(name) <= limit:
        return name
    readable = name[: limit - _HASH_LENGTH - 1].rstrip("-.")
    return f"{readable}-{_digest(name)}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:_HASH_LENGTH]


def fresh_name(record: str, role: str) -> str:
    """A new name for each helper Pod or Job of a Record (an upload, a batch of kept logs), readable in
    `kubectl get`: `<record>-<role>-<random>`, the Record's part cut to 40 characters."""
    readable = dns_label(record)[:40].strip("-")
    suffix = secrets.token_hex(4)
    return f"{readable}-{role}-{suffix}" if readable else f"{role}-{suffix}"


def job_name(invocation: str) -> str:
    """The Job of an Invocation: the same name when it fits a Job's limits, else a shortened one.

    Manual Invocations may have names up to 253 characters; the Job's name becomes a label value.
    """
    if len(invocation) <= MAX_INVOCATION_NAME and dns_label(invocation) == invocation:
        return invocation
    digest = _digest(invocation)
    readable = dns_label(invocation)[: MAX_INVOCATION_NAME - _HASH_LENGTH - 1].strip("-")
    return f"{readable}-{digest}" if readable else digest
