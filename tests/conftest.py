"""Shared fixtures: a running sandbox (API server, operator, Job controller, kubelet), the real
control plane with a node agent, and the extractor's folders.

`cluster` runs a test on both: the embedded sandbox and the real control plane (built by
hack/build-control-plane.sh). Without the binaries, or without root (the node agent bind-mounts a
Pod's service-account token and /etc/hosts in a private mount namespace), the real half is skipped
with the reason; with AUTOSCENE_REQUIRE_CONTROL_PLANE=1 (CI) it fails instead.
"""

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoscene import invocations, kube, status, upload
from autoscene.sandbox.demo import sample_manifests
from autoscene.sandbox.realcluster import RealCluster
from autoscene.sandbox.session import Sandbox, wait_for

from .extractor_fixtures import Samples

REQUIRE_CONTROL_PLANE = "AUTOSCENE_REQUIRE_CONTROL_PLANE"


class RunningSandbox:
    """A sandbox with the samples applied, and the verbs the end-to-end tests speak."""

    def __init__(self, sandbox: Sandbox | RealCluster, namespace: str | None = None) -> None:
        self.sandbox = sandbox
        self.namespace = namespace or sandbox.namespace

    def apply(self, objects: Any) -> list[str]:
        """Create or update the objects in this namespace, as `kubectl apply` does."""
        if isinstance(self.sandbox, RealCluster):
            return self.sandbox.kubectl_apply(objects, self.namespace)
        return self.sandbox.apply(objects)

    def upload(self, record: str, *sources: Path, prefix: str = "") -> list[upload.UploadedFile]:
        return self.sandbox.upload(record, upload.plan(list(sources), prefix), self.namespace)

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
    with Sandbox(tmp_path / "sandbox") as running:
        running.apply(list(sample_manifests()))
        wait_for(lambda: _claim_of_samples(running.namespace), 30, "the sample record's volume")
        yield RunningSandbox(running)


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    """The real control plane and a node agent, with autoscene deployed from manifests/."""
    from autoscene.sandbox.controlplane import ControlPlaneUnavailable, find_binaries

    try:
        find_binaries()
        if os.geteuid() != 0:
            raise ControlPlaneUnavailable("the node agent needs root (private mount namespaces for Pods)")
    except ControlPlaneUnavailable as error:
        if os.environ.get(REQUIRE_CONTROL_PLANE) == "1":
            pytest.fail(
                f"{REQUIRE_CONTROL_PLANE}=1 but the real control plane cannot run: {error}", pytrace=False
            )
        pytest.skip(f"real control plane: {error}")
    previous = kube._api_client
    try:
        with RealCluster(tmp_path_factory.mktemp("real") / "cluster") as running:
            yield running
    finally:
        kube._api_client = previous


@pytest.fixture(params=["embedded", "real"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningSandbox]:
    """The samples in a namespace of their own, on the embedded sandbox and on the real control plane."""
    if request.param == "embedded":
        yield request.getfixturevalue("sandbox")
        return
    real: RealCluster = request.getfixturevalue("real_cluster")
    kube.configure(str(real.kubeconfig))
    namespace = f"e2e-{secrets.token_hex(4)}"
    real.kubectl_apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    # Every Pod the operator and the uploader create is held to the "restricted" profile.
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                },
            }
        ]
    )
    try:
        real.kubectl_apply(list(sample_manifests()), namespace)
        wait_for(lambda: _claim_of_samples(namespace), 30, "the sample record's volume")
        yield RunningSandbox(real, namespace)
    finally:
        real.kubectl("delete", "namespace", namespace, "--wait=false")


def _claim_of_samples(namespace: str) -> str | None:
    record = kube.get_custom("records", namespace, "recordings") or {}
    return (record.get("status") or {}).get("claimName")


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


@dataclass(frozen=True)
class ApiNamespace:
    """A fresh namespace on one of the two API servers, for tests that ask both the same thing."""

    kind: str  # "embedded" or "real"
    kubeconfig: Path
    namespace: str


@pytest.fixture(scope="module")
def bare_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The embedded API server with its Job controller and kubelet, without an operator."""
    with Sandbox(tmp_path_factory.mktemp("api") / "sandbox", with_operator=False) as running:
        yield running


@contextlib.contextmanager
def namespace_on(kind: str, running: Sandbox | RealCluster) -> Iterator[ApiNamespace]:
    """A namespace of its own on that API server, deleted at the end; `kube` points at the server."""
    kube.configure(str(running.kubeconfig))
    namespace = f"api-{secrets.token_hex(3)}"
    kube.core().create_namespace({"metadata": {"name": namespace}})
    try:
        yield ApiNamespace(kind, running.kubeconfig, namespace)
    finally:
        kube.configure(str(running.kubeconfig))  # a test may have pointed it elsewhere
        kube.core().delete_namespace(namespace)


@pytest.fixture(params=["embedded", "real"])
def api_namespace(request: pytest.FixtureRequest) -> Iterator[ApiNamespace]:
    """A namespace of its own on the embedded API server, then on the real one."""
    running = request.getfixturevalue("bare_sandbox" if request.param == "embedded" else "real_cluster")
    with namespace_on(request.param, running) as made:
        yield made
