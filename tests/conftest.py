"""Shared fixtures: a running sandbox (API server, operator, Job runner), and the extractor's folders."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscene import invocations, kube, status, upload
from autoscene.sandbox.session import Sandbox, wait_for

from .extractor_fixtures import Samples


class RunningSandbox:
    """A sandbox with the samples applied, and the verbs the end-to-end tests speak."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.namespace = sandbox.namespace

    def upload(self, record: str, *sources: Path, prefix: str = "") -> list[upload.UploadedFile]:
        planned = upload.plan(list(sources), prefix)
        return upload.upload_to_folder(self.sandbox.volumes, self.namespace, record, planned, lambda _: None)

    def invocations(self) -> list[dict[str, Any]]:
        return kube.list_custom(invocations.PLURAL, self.namespace)

    def invocation(self, name: str) -> dict[str, Any] | None:
        return kube.get_custom(invocations.PLURAL, self.namespace, name)

    def finished(self, name: str, timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            found = self.invocation(name)
            return found if found and (found.get("status") or {}).get("phase") in status.FINISHED else None

        return wait_for(done, timeout, f"invocation {name} to finish")

    def run_of(
        self,
        path: str,
        trigger: str | None = None,
        exclude: frozenset[str] = frozenset(),
        timeout: float = 60,
    ) -> dict[str, Any]:
        """The finished Invocation for the file at `path` (waits for it to be created and to finish),
        optionally the one of a given trigger, or one not named in `exclude`."""

        def created() -> str | None:
            names = [
                inv["metadata"]["name"]
                for inv in self.invocations()
                if inv["spec"]["file"] == path
                and (trigger is None or inv["spec"].get("trigger") == trigger)
                and inv["metadata"]["name"] not in exclude
            ]
            return names[0] if names else None

        return self.finished(wait_for(created, timeout, f"an invocation for {path}"), timeout)

    def outputs_of(self, invocation: dict[str, Any]) -> Path:
        record = kube.get_custom("records", self.namespace, invocation["spec"]["record"])
        assert record is not None
        claim = record["status"]["claimName"]
        return self.sandbox.volumes / self.namespace / claim / "outputs" / invocation["metadata"]["name"]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    from autoscene.sandbox.demo import sample_manifests

    with Sandbox(tmp_path / "sandbox") as running:
        running.apply(list(sample_manifests()))
        wait_for(
            lambda: (
                (kube.get_custom("records", running.namespace, "recordings") or {})
                .get("status", {})
                .get("claimName")
            ),
            30,
            "the sample record's volume",
        )
        yield RunningSandbox(running)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return Samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    return folder


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"
