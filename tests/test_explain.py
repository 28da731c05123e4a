"""`kubectl explain` against the embedded sandbox: its OpenAPI v3 documents carry the CRDs' schemas,
so kubectl prints the descriptions written in crds/*.yaml, as it does against a cluster."""

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscene.sandbox.realcluster import RealCluster
from autoscene.sandbox.session import Sandbox

CRDS = Path(__file__).resolve().parents[1] / "crds"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def kubectl_for(kubeconfig: Path, cache: Path) -> Kubectl:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    return run


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(tmp_path_factory.mktemp("explain") / "sandbox", with_operator=False) as running:
        yield running


@pytest.fixture
def kubectl(embedded: Sandbox, tmp_path: Path) -> Kubectl:
    return kubectl_for(embedded.kubeconfig, tmp_path / "cache")


def schema_at(plural: str, *path: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"{plural}.yaml").read_text())
    node: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path:
        node = node["properties"][name]
    return node


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def explained(kubectl: Kubectl, field: str, *options: str) -> str:
    done = kubectl("explain", field, *options)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_explain_prints_a_fields_description_and_its_fields(kubectl: Kubectl) -> None:
    output = explained(kubectl, "invocation.spec")
    assert "KIND:       Invocation" in output and "VERSION:    v1alpha1" in output
    spec = schema_at("invocations", "spec")
    assert words(spec["description"]) in words(output)
    lines = output.splitlines()
    for name, field in spec["properties"].items():
        (line,) = [line for line in lines if line.startswith(f"  {name}\t<")]
        assert line.endswith(" -required-") == (name in spec["required"])
        if field["type"] in ("string", "integer", "boolean"):
            assert f"<{field['type']}>" in line
        assert words(field["description"]) in words(output)


def test_explain_follows_a_path_to_a_leaf(kubectl: Kubectl) -> None:
    output = explained(kubectl, "trigger.spec.fileGlob")
    assert "FIELD: fileGlob <string>" in output
    assert words(schema_at("triggers", "spec", "fileGlob")["description"]) in words(output)


@pytest.mark.parametrize("kind", ["action", "trigger", "record", "recordfile", "invocation"])
def test_every_kind_is_explained(kubectl: Kubectl, kind: str) -> None:
    output = explained(kubectl, kind)
    schema = schema_at(f"{kind}s")
    assert words(schema["description"]) in words(output)
    assert "metadata\t<ObjectMeta>" in output and "spec\t<Object> -required-" in output


def test_explain_nested_objects_maps_and_metadata(kubectl: Kubectl) -> None:
    output = explained(kubectl, "record.spec.storage")
    assert "claimName\t<string>" in output and "size\t<string>" in output
    assert "limits\t<map[string]Object>" in explained(kubectl, "action.spec.resources")
    assert "labels\t<map[string]string>" in explained(kubectl, "invocation.metadata")
    recursive = explained(kubectl, "trigger.spec", "--recursive")
    assert "      operator\t<string> -required-" in recursive  # recordSelector.matchExpressions[].operator


def test_an_unknown_field_is_named(kubectl: Kubectl) -> None:
    done = kubectl("explain", "invocation.spec.nonsense")
    assert done.returncode != 0
    assert 'field "nonsense" does not exist' in done.stderr


@pytest.mark.parametrize("field", ["invocation.spec", "trigger.spec.fileGlob", "record.spec.storage"])
def test_explain_says_the_same_as_on_the_real_control_plane(
    kubectl: Kubectl, real_cluster: RealCluster, tmp_path: Path, field: str
) -> None:
    real = kubectl_for(real_cluster.kubeconfig, tmp_path / "real-cache")
    assert explained(kubectl, field) == explained(real, field)
