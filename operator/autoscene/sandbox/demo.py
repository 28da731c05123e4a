"""The whole flow on the sandbox: the chained samples applied, an MP4 uploaded, its frames extracted
into a Record of their own and a contact sheet made of them."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from .. import (
    API_VERSION,
    firing,
    invocations,
    jobs,
    kube,
    labels,
    paths,
    records,
    selectors,
    status,
    upload,
)
from .session import wait_for

DEMO_RECORD = "recordings"
CONTACT_SHEET = "contact_sheet.jpg"
SHEETS_FOLDER = "contact-sheets"  # the contact-sheet Action's outputs.prefix in manifests/chain


@dataclass
class DemoResult:
    """The extraction run and where its frames are; the contact-sheet run and its sheet, once made."""

    invocation: dict[str, Any]
    outputs: Path
    sheet_run: dict[str, Any] | None = None
    contact_sheet: Path | None = None

    @property
    def succeeded(self) -> bool:
        return all(
            run is not None and (run.get("status") or {}).get("phase") == status.SUCCEEDED
            for run in (self.invocation, self.sheet_run)
        )


class Cluster(Protocol):
    """What the demo needs of a cluster: the embedded `Sandbox` or a `RealCluster`."""

    namespace: str
    volumes: Path

    def apply(self, objects: Any) -> list[str]: ...

    def upload(self, record: str, planned: list[tuple[Path, str]]) -> list[upload.UploadedFile]: ...


def run_demo(sandbox: Cluster, video: Path, say: Callable[[str], None], timeout: float = 180) -> DemoResult:
    """Apply the chained samples (`manifests/chain`), upload `video` to the sample Record and follow
    the chain: its frames extracted into the Record "<record>-frames", then a contact sheet of them."""
    for applied in sandbox.apply(list(chain_manifests())):
        say(f"applied {applied}")
    namespace = sandbox.namespace
    record = wait_for(
        lambda: _ready_record(namespace, DEMO_RECORD), 30, f'record "{DEMO_RECORD}" to get its volume'
    )
    say(f'record "{DEMO_RECORD}" is ready on claim "{records.claim_of(record)}"')
    planned = upload.plan([video])
    _check_a_trigger_fires(record, planned[0][1])
    uploaded = sandbox.upload(DEMO_RECORD, planned)
    say(f"uploaded {uploaded[0].path} ({uploaded[0].size} bytes, sha256 {uploaded[0].sha256[:12]}…)")
    invocation = wait_for(
        lambda: _finished_run_of(namespace, DEMO_RECORD, uploaded[0].path),
        timeout,
        f"the invocation for {uploaded[0].path} to finish",
    )
    claim = records.claim_of(record) or ""
    outputs = sandbox.volumes / namespace / claim / jobs.output_subpath(invocation["metadata"]["name"])
    registered = (invocation.get("status") or {}).get("outputRecord") or {}
    if (invocation.get("status") or {}).get("phase") != status.SUCCEEDED or not registered:
        return DemoResult(invocation, outputs)
    frames_record = registered["name"]
    count = registered.get("fileCount")
    say(f'{invocation["metadata"]["name"]}: {count} files registered in record "{frames_record}"')
    folder = str(PurePosixPath(uploaded[0].path).with_suffix(""))
    manifest = f"{folder}/manifest.json"
    sheet_run = wait_for(
        lambda: _finished_run_of(namespace, frames_record, manifest),
        timeout,
        f"the contact sheet of {frames_record}/{manifest}",
    )
    frames_claim = records.claim_of(_ready_record(namespace, frames_record) or {}) or ""
    files = sandbox.volumes / namespace / frames_claim / jobs.FILES_SUBPATH
    sheet = files / SHEETS_FOLDER / folder / CONTACT_SHEET
    say(f"{sheet_run['metadata']['name']}: contact sheet of {frames_record}/{manifest} at {sheet}")
    return DemoResult(invocation, files / folder, sheet_run, sheet if sheet.is_file() else None)


class NothingFires(ValueError):
    """No Trigger of the samples runs on the file given to the demo: it would wait in vain."""


def _check_a_trigger_fires(record: Mapping[str, Any], path: str) -> None:
    """`NothingFires`, saying which files the Triggers of `record` take, unless one fires on `path`."""
    meta = record["metadata"]
    record_labels = meta.get("labels") or {}
    triggers = kube.list_custom("triggers", meta["namespace"])
    if any(firing.fires_on(trigger, record_labels, path) for trigger in triggers):
        return
    # What the Triggers that select this Record take, for the message.
    triggers = [t for t in triggers if selectors.selects(t["spec"].get("recordSelector"), record_labels)]
    taken = ", ".join(sorted({str(trigger["spec"].get("fileGlob")) for trigger in triggers})) or "nothing"
    raise NothingFires(f"no Trigger of the demo runs on {path!r}: they take {taken} (give an MP4 video)")


def sample_manifests() -> Any:
    from .apply import documents

    return documents(paths.require(paths.SAMPLES))


def chain_manifests() -> Any:
    """The samples with outputs saved into Records and a contact-sheet Action chained after them."""
    from .apply import documents

    return documents(paths.require(paths.CHAIN))


def noop_manifests(
    file_glob: str, action: str = "noop", trigger: str = "on-bin", **action_spec: Any
) -> list[dict[str, Any]]:
    """An Action that does nothing (busybox `true`, with `action_spec` added) and a Trigger running it
    on the files matching `file_glob`: the cheapest run there is, for measuring the rest."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "Action",
            "metadata": {"name": action},
            "spec": {"image": "busybox:1.36.1", "command": ["true"], **action_spec},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "Trigger",
            "metadata": {"name": trigger},
            "spec": {"action": action, "fileGlob": file_glob},
        },
    ]


def _ready_record(namespace: str, name: str) -> dict[str, Any] | None:
    record = kube.get_custom("records", namespace, name)
    return record if record is not None and records.claim_of(record) else None


def _finished_run_of(namespace: str, record: str, path: str) -> dict[str, Any] | None:
    selector = f"{labels.RECORD}={labels.value_of(record)}"
    for invocation in kube.list_custom(invocations.PLURAL, namespace, label_selector=selector):
        finished = (invocation.get("status") or {}).get("phase") in status.FINISHED
        if invocation["spec"]["file"] == path and finished:
            return invocation
    return None
