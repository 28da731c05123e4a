"""The whole flow on the sandbox: samples applied, an MP4 uploaded, the Invocation awaited."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import invocations, jobs, kube, labels, paths, records, status, upload
from .session import wait_for

DEMO_RECORD = "recordings"


@dataclass
class DemoResult:
    invocation: dict[str, Any]
    outputs: Path

    @property
    def succeeded(self) -> bool:
        return (self.invocation.get("status") or {}).get("phase") == status.SUCCEEDED


class Cluster(Protocol):
    """What the demo needs of a cluster: the embedded `Sandbox` or a `RealCluster`."""

    namespace: str
    volumes: Path

    def apply(self, objects: Any) -> list[str]: ...

    def upload(self, record: str, planned: list[tuple[Path, str]]) -> list[upload.UploadedFile]: ...


def run_demo(sandbox: Cluster, video: Path, say: Callable[[str], None], timeout: float = 180) -> DemoResult:
    """Apply the samples, upload `video` to the sample Record and wait for its Invocation to finish."""
    for applied in sandbox.apply(list(sample_manifests())):
        say(f"applied {applied}")
    namespace = sandbox.namespace
    record = wait_for(lambda: _ready_record(namespace), 30, f'record "{DEMO_RECORD}" to get its volume')
    say(f'record "{DEMO_RECORD}" is ready on claim "{records.claim_of(record)}"')
    planned = upload.plan([video])
    uploaded = sandbox.upload(DEMO_RECORD, planned)
    say(f"uploaded {uploaded[0].path} ({uploaded[0].size} bytes, sha256 {uploaded[0].sha256[:12]}…)")
    invocation = wait_for(
        lambda: _finished_run_of(namespace, uploaded[0].path),
        timeout,
        f"the invocation for {uploaded[0].path} to finish",
    )
    claim = records.claim_of(record) or ""
    outputs = sandbox.volumes / namespace / claim / jobs.output_subpath(invocation["metadata"]["name"])
    return DemoResult(invocation, outputs)


def sample_manifests() -> Any:
    from .apply import documents

    return documents(paths.require(paths.SAMPLES))


def _ready_record(namespace: str) -> dict[str, Any] | None:
    record = kube.get_custom("records", namespace, DEMO_RECORD)
    return record if record is not None and records.claim_of(record) else None


def _finished_run_of(namespace: str, path: str) -> dict[str, Any] | None:
    selector = f"{labels.RECORD}={DEMO_RECORD}"
    for invocation in kube.list_custom(invocations.PLURAL, namespace, label_selector=selector):
        finished = (invocation.get("status") or {}).get("phase") in status.FINISHED
        if invocation["spec"]["file"] == path and finished:
            return invocation
    return None
