"""Outputs into Records: where a run's outputs go (`Action.spec.outputs`), the Job that copies them
there, what it reports, and the provenance each output file carries. Free of any I/O.

A run's outputs are written to its own folder of the source Record's volume (`/cos/outputs`). When the
run succeeds and its Action names an output Record, a short publish Job mounts both volumes, copies the
outputs into the output Record's `files/` (staged, then linked into place, so a Job of that Record
never reads half a file), and prints each file's sha256 and size, computed there, where the bytes are.
The operator reads that list from the Job's log (through the API, as uploads do) and registers the
files as RecordFiles of the output Record: new files fire that Record's Triggers, so Actions chain.

Each output file records its chain: the Actions its content went through, oldest first. A run of an
Action already in the chain of its file would feed the Action its own outputs (directly or through a
cycle), and is stopped before its Job is made (reason ChainCycle); so is a chain longer than
`MAX_CHAIN_DEPTH` (reason ChainTooDeep).
"""

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import API_VERSION, jobs, labels, lifecycle, naming, ownership, templates, upload

ADD, OVERWRITE, REPLACE = "add", "overwrite", "replace"
REGISTERING = "RegisteringOutputs"
NOT_REGISTERED = "OutputsNotRegistered"
CHAIN_CYCLE, CHAIN_TOO_DEEP = "ChainCycle", "ChainTooDeep"
# Ten Actions in a row is far more than any pipeline we know of; a longer chain is a loop through
# ever new Records more likely than a plan.
MAX_CHAIN_DEPTH = 10
PUBLISH_ROLE = "publish-outputs"
PUBLISH_CONTAINER = "publish"
DERIVED_FROM_LABEL = "autoscene.io/derived-from"
STAGING_FOLDER = ".autoscene-outputs"
SOURCE_FOLDER, TARGET_FOLDER = "/outputs", "/target"
# The size of a new output Record when its source keeps its files on a claim of its own.
DEFAULT_SIZE = "10Gi"
_RECORD_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# The publish script's exit when an output can never be registered (its Job fails at once, untried).
UNREGISTRABLE_EXIT_CODE = 3
# Runs in busybox (sh, cp, find, sha256sum, stat). Prints "sha256 HASH  ./PATH" and "size BYTES ./PATH"
# for each file, as found in the staging copy on the output Record's volume.
PUBLISH_SCRIPT = r"""set -eu
stage="$TARGET/$STAGING/$INVOCATION"
dst="$TARGET/$FILES${PREFIX:+/$PREFIX}"
rm -rf "$stage"
mkdir -p "$stage"
cp -R "$SOURCE/." "$stage/"
cd "$stage"
if [ -n "$(find . -name '*
*')" ]; then
  echo "an output's name holds a line break: outputs cannot be registered" >&2
  exit @UNREGISTRABLE@
fi
find . -type f -exec sha256sum {} + | sed 's/^/sha256 /'
find . -type f -exec stat -c 'size %s %n' {} +
cd /
if [ "$MODE" = overwrite ]; then
  rm -rf "$dst"
  mkdir -p "$(dirname "$dst")"
  mv "$stage" "$dst"
elif [ "$MODE" = replace ]; then
  mkdir -p "$dst"
  for entry in "$stage"/* "$stage"/.[!.]* "$stage"/..?*; do
    [ -e "$entry" ] || continue
    rm -rf "$dst/${entry##*/}"
    mv "$entry" "$dst/"
  done
  rm -rf "$stage"
else
  mkdir -p "$dst"
  cp -R -l -f "$stage/." "$dst/"
  rm -rf "$stage"
fi
echo "placed"
""".replace("@UNREGISTRABLE@", str(UNREGISTRABLE_EXIT_CODE))


class OutputsError(ValueError):
    """Outputs that cannot be registered, with a message that says why."""


@dataclass(frozen=True)
class Destination:
    """The Record a run's outputs go to, the folder inside it ("" for its top), and the mode."""

    record: str
    prefix: str
    mode: str

    def as_status(self) -> dict[str, Any]:
        return {"name": self.record, "prefix": self.prefix, "mode": self.mode}

    def path_of(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def holds(self, path: str) -> bool:
        """Whether `path` lies under this destination's prefix (every path does for no prefix)."""
        return not self.prefix or path.startswith(f"{self.prefix}/")

    def replaced_by(self, written: Iterable[str]) -> Callable[[str], bool]:
        """Whether the Record's file at a path gives way to a run that wrote `written` (paths relative
        to the prefix): in mode overwrite every file under the prefix does, in mode replace every file
        under a top-level file or folder of the run's outputs (a folder goes whole), in mode add none
        (a file at the same path is simply replaced)."""
        roots = {path.split("/", 1)[0] for path in written}

        def replaced(path: str) -> bool:
            if self.mode == ADD or not self.holds(path):
                return False
            relative = path[len(self.prefix) + 1 :] if self.prefix else path
            return self.mode == OVERWRITE or relative.split("/", 1)[0] in roots

        return replaced

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> "Destination":
        return cls(status["name"], status.get("prefix", ""), status.get("mode", ADD))


@dataclass(frozen=True)
class PublishedFile:
    path: str  # relative to the destination's prefix
    size: int
    sha256: str


def destination(action_spec: Mapping[str, Any], values: Mapping[str, str]) -> Destination | None:
    """Where the Action's outputs go for a run with these placeholder `values`; None when the Action
    keeps them in the run's output folder only. `templates.ParameterError` for an unknown placeholder,
    a name that is no Record name, or a prefix that leaves the Record."""
    wanted = action_spec.get("outputs")
    if not wanted:
        return None
    record = templates.expand(str(wanted["record"]), values, "outputs.record")
    if len(record) > naming.MAX_OBJECT_NAME or not _RECORD_NAME.match(record):
        raise templates.ParameterError(
            f"outputs.record expands to {record!r}, which is not a Record name (lower-case letters, "
            "digits, '-' and '.', at most 253 characters)"
        )
    prefix = templates.expand(str(wanted.get("prefix") or ""), values, "outputs.prefix").strip("/")
    if prefix:
        # The same rules as an uploaded file's path (`upload.record_path`), and no line break (which
        # no output's path may hold: see PUBLISH_SCRIPT).
        try:
            prefix = upload.record_path(prefix)
        except upload.UploadError as error:
            raise templates.ParameterError(f"outputs.prefix expands to {prefix!r}: {error}") from None
        if "\n" in prefix:
            raise templates.ParameterError(f"outputs.prefix expands to {prefix!r}, which holds a line break")
    return Destination(record, prefix, str(wanted.get("mode") or ADD))


def registering(current: Mapping[str, Any], observed: Mapping[str, Any]) -> Mapping[str, Any]:
    """What to write when the run's Job reports `observed`: a success becomes "still running, its
    outputs being registered" (reason RegisteringOutputs) when the run has an output Record."""
    if observed.get("phase") != lifecycle.SUCCEEDED or not current.get("outputRecord"):
        return observed
    kept = {
        key: value
        for key, value in observed.items()
        if key not in ("phase", "reason", "message", "completionTime", "duration")
    }
    name = current["outputRecord"]["name"]
    return {
        **kept,
        "phase": lifecycle.RUNNING,
        "reason": REGISTERING,
        "message": f'the action succeeded; its outputs are being copied into record "{name}"',
    }


def chain_stop(chain: Sequence[str], action: str, source: str) -> tuple[str, str] | None:
    """Why a run of `action` on a file whose content went through `chain` (Actions, oldest first)
    must not start, as (reason, message); None when it may. `source` names the file for the message."""
    if action in chain:
        path = " → ".join([*chain, action])
        return CHAIN_CYCLE, (
            f'{source} was made by Action "{action}" (chain {path}): running it again would feed the '
            "Action its own outputs, so this run stops here"
        )
    if len(chain) >= MAX_CHAIN_DEPTH:
        return CHAIN_TOO_DEEP, (
            f"{source} went through {len(chain)} Actions already ({' → '.join(chain)}), the most a chain "
            f"may hold is {MAX_CHAIN_DEPTH}: this run stops here"
        )
    return None


def publish_job_name(invocation: str) -> str:
    return naming.job_name(f"{invocation}-publish")


def publish_job(
    invocation: Mapping[str, Any],
    target: Destination,
    source_claim: str,
    target_claim: str,
    ttl_seconds: int | None = None,
) -> dict[str, Any]:
    """The Job copying `invocation`'s outputs from `source_claim` into `target` on `target_claim`;
    owned by the Invocation, like its run's Job, and told apart from it by its role label."""
    meta, spec = invocation["metadata"], invocation["spec"]
    job_labels = {
        **labels.for_invocation(action=spec["action"], record=spec["record"], trigger=spec.get("trigger")),
        labels.INVOCATION: meta["name"],
        labels.ROLE: PUBLISH_ROLE,
    }
    mounts: list[dict[str, Any]] = [
        {
            "name": "source",
            "mountPath": SOURCE_FOLDER,
            "subPath": jobs.output_subpath(meta["name"]),
            "readOnly": True,
        },
        {"name": "target" if target_claim != source_claim else "source", "mountPath": TARGET_FOLDER},
    ]
    volumes = [{"name": "source", "persistentVolumeClaim": {"claimName": source_claim}}]
    if target_claim != source_claim:  # one claim is one volume of the Pod, however many mounts it has
        volumes.append({"name": "target", "persistentVolumeClaim": {"claimName": target_claim}})
    # The folders go in variables, not in the script: a path is a value a kubelet may map.
    env = {
        "SOURCE": SOURCE_FOLDER,
        "TARGET": TARGET_FOLDER,
        "FILES": jobs.FILES_SUBPATH,
        "STAGING": STAGING_FOLDER,
        "INVOCATION": meta["name"],
        "PREFIX": target.prefix,
        "MODE": target.mode,
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": 2,  # a copy is worth another try: a node's trouble, a full disk freed meanwhile
        # ... but not outputs that cannot be registered: the same outputs fail the same way again.
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": PUBLISH_CONTAINER,
                        "operator": "In",
                        "values": [UNREGISTRABLE_EXIT_CODE],
                    },
                }
            ]
        },
        "template": {
            "metadata": {"labels": job_labels},
            "spec": jobs.helper_pod_spec(
                PUBLISH_CONTAINER, ["sh", "-c", PUBLISH_SCRIPT], env, mounts, volumes, memory_limit="128Mi"
            ),
        },
    }
    if ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": publish_job_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": job_labels,
            "ownerReferences": ownership.owned_by(invocation),
        },
        "spec": job_spec,
    }


def is_publish_job(job: Mapping[str, Any]) -> bool:
    return (job["metadata"].get("labels") or {}).get(labels.ROLE) == PUBLISH_ROLE


def published(log: str) -> list[PublishedFile]:
    """The files a publish Job's log lists (see `PUBLISH_SCRIPT`), in path order. OutputsError when
    the log does not end with the placing step, or lists a file without its size or checksum."""
    lines = log.splitlines()
    if not lines or lines[-1].strip() != "placed":
        raise OutputsError("the publish job's log does not say its files were placed")
    sums: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for line in lines:
        if line.startswith("sha256 "):
            digest, _, path = line[len("sha256 ") :].partition("  ")
            sums[_relative(path)] = digest
        elif line.startswith("size "):
            size, _, path = line[len("size ") :].partition(" ")
            sizes[_relative(path)] = int(size)
    if set(sums) != set(sizes):
        missing = sorted(set(sums) ^ set(sizes))
        raise OutputsError(f"the publish job's log lists {len(missing)} file(s) half: {missing[0]}")
    return [PublishedFile(path, sizes[path], sums[path]) for path in sorted(sums)]


def _relative(listed: str) -> str:
    return listed[2:] if listed.startswith("./") else listed


def provenance(invocation: Mapping[str, Any], image: str) -> dict[str, Any]:
    """What an output file says of where it comes from: the run, its Record, file and content, the
    Action and the `image` the run used, and the chain of Actions its content went through (this one last)."""
    meta, spec = invocation["metadata"], invocation["spec"]
    chain = [*(spec.get("chain") or []), spec["action"]]
    return {
        "invocation": meta["name"],
        "record": spec["record"],
        "file": spec["file"],
        "sha256": spec.get("sha256") or "",
        "action": spec["action"],
        "image": image,
        "chain": chain,
    }


def record_body(source: Mapping[str, Any], name: str, claim_class: str | None = None) -> dict[str, Any]:
    """A new Record for outputs of runs on `source`'s files: a volume of the same size, storage class
    and access mode. When `source` keeps its files on a claim of its own, `claim_class` is that
    claim's storage class and the size is `DEFAULT_SIZE`."""
    storage = source["spec"]["storage"]
    wanted = {key: storage[key] for key in ("size", "storageClassName", "accessMode") if storage.get(key)}
    wanted.setdefault("size", DEFAULT_SIZE)
    if claim_class and "storageClassName" not in wanted:
        wanted["storageClassName"] = claim_class
    return {
        "apiVersion": API_VERSION,
        "kind": "Record",
        "metadata": {
            "name": name,
            "namespace": source["metadata"]["namespace"],
            "labels": {DERIVED_FROM_LABEL: labels.value_of(source["metadata"]["name"])},
        },
        "spec": {"storage": wanted},
    }
