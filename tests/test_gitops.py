"""Keeping autoscene objects in Git: the health checks Argo CD and Flux read, and no drift once the
operator has acted.

The Argo CD checks (manifests/health/*.lua) run in Lua 5.1, the language of Argo CD's interpreter
(gopher-lua), with the object as the global `obj`; Argo CD reads `status` and `message` of the table
the script returns. The Flux expressions are the README's, evaluated as CEL where a CEL library is
installed. The drift check is `kubectl diff -k manifests/samples`, client-side (what `kubectl apply`
and Argo CD compare) and server-side (what Flux applies), on both API servers.
"""

import copy
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from autoscene import kube
from autoscene.sample_video import make_sample_video
from autoscene.sandbox.demo import sample_manifests
from autoscene.sandbox.session import wait_for

from .conftest import RunningSandbox

REPO = Path(__file__).resolve().parents[1]
HEALTH = REPO / "manifests" / "health"
SAMPLES = REPO / "manifests" / "samples"
GROUP = "autoscene.io"
READY_KINDS = {"Record": "records", "Trigger": "triggers", "Action": "actions"}
SCRIPTS = {**{kind: HEALTH / "ready.lua" for kind in READY_KINDS}, "Invocation": HEALTH / "invocation.lua"}
# Flux's expressions are checked where a CEL library is installed (cel-python).
HAS_CEL = importlib.util.find_spec("celpy") is not None
# Argo CD's health statuses (gitops-engine's HealthStatusCode).
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
SAMPLE_NAMES = [
    ("Record", "records", "recordings"),
    ("Trigger", "triggers", "auto-extract-images"),
    ("Action", "actions", "extract-images"),
]


def argo_health(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The health Argo CD would show for `obj`: its kind's script run on it, `status` and `message`."""
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    lua.globals().obj = lua.table_from(copy.deepcopy(dict(obj)), recursive=True)
    result = lua.execute(SCRIPTS[kind].read_text())
    health = {"status": result["status"], "message": result["message"]}
    assert health["status"] in ARGO_STATUSES, health
    assert isinstance(health["message"], str), health
    return health


def condition(kind: str, status: str, message: str = "", generation: int = 1) -> dict[str, Any]:
    return {
        "type": "Succeeded" if kind == "Invocation" else "Ready",
        "status": status,
        "reason": "Because",
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": generation,
    }


def an_object(kind: str, *conditions: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": kind,
        "metadata": {"name": "one", "namespace": "media", "generation": generation},
        "spec": {},
    }
    if conditions:
        obj["status"] = {"conditions": list(conditions)}
    return obj


# The Argo CD checks --------------------------------------------------------------------------------


def test_the_argocd_cm_snippet_carries_each_kinds_script_verbatim() -> None:
    (config_map,) = [doc for doc in yaml.safe_load_all((HEALTH / "argocd-cm.yaml").read_text()) if doc]
    assert (config_map["kind"], config_map["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    expected = {
        f"resource.customizations.health.{GROUP}_{kind}": script.read_text()
        for kind, script in SCRIPTS.items()
    }
    assert config_map["data"] == expected


def test_the_readme_shows_the_scripts_as_they_are() -> None:
    readme = (REPO / "README.md").read_text()
    for script in {*SCRIPTS.values()}:
        assert script.read_text().strip() in readme, f"README shows another {script.name}"


@pytest.mark.parametrize("kind", [*READY_KINDS, "Invocation"])
def test_true_is_healthy_with_the_operators_message(kind: str) -> None:
    health = argo_health(kind, an_object(kind, condition(kind, "True", "all good")))
    assert health == {"status": "Healthy", "message": "all good"}


@pytest.mark.parametrize("kind", [*READY_KINDS, "Invocation"])
def test_false_is_degraded_with_why(kind: str) -> None:
    health = argo_health(kind, an_object(kind, condition(kind, "False", 'claim refused: quota "storage"')))
    assert health == {"status": "Degraded", "message": 'claim refused: quota "storage"'}


@pytest.mark.parametrize("kind", [*READY_KINDS, "Invocation"])
def test_unknown_is_progressing(kind: str) -> None:
    health = argo_health(kind, an_object(kind, condition(kind, "Unknown", "running")))
    assert health == {"status": "Progressing", "message": "running"}


@pytest.mark.parametrize("kind", [*READY_KINDS, "Invocation"])
def test_no_condition_yet_is_progressing(kind: str) -> None:
    bare = an_object(kind)
    other = an_object(kind, {"type": "Other", "status": "False"})
    empty = {**an_object(kind), "status": {}}
    for obj in (bare, other, empty):
        health = argo_health(kind, obj)
        assert health["status"] == "Progressing", obj
        assert health["message"], obj


@pytest.mark.parametrize("kind", READY_KINDS)
def test_a_condition_for_an_older_spec_is_progressing(kind: str) -> None:
    """Right after a sync changed the spec, Ready still speaks of the previous generation."""
    stale = an_object(kind, condition(kind, "True", "all good", generation=1), generation=2)
    assert argo_health(kind, stale) == {
        "status": "Progressing",
        "message": "the operator has not yet seen generation 2",
    }


def test_the_message_falls_back_to_the_reason() -> None:
    bare = {key: value for key, value in condition("Record", "False").items() if key != "message"}
    assert argo_health("Record", an_object("Record", bare)) == {"status": "Degraded", "message": "Because"}


# The Flux expressions ------------------------------------------------------------------------------


def flux_kustomization() -> dict[str, Any]:
    """The Flux Kustomization the README shows."""
    readme = (REPO / "README.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL):
        for doc in yaml.safe_load_all(block):
            if isinstance(doc, dict) and doc.get("apiVersion", "").startswith("kustomize.toolkit.fluxcd.io/"):
                return doc
    raise AssertionError("the README shows no Flux Kustomization")


def flux_health(kind: str, obj: Mapping[str, Any]) -> str:
    """Current, Failed or InProgress as kustomize-controller judges by the expressions: inProgress,
    then failed, then current; none true, or a field missing, is in progress."""
    celpy = pytest.importorskip("celpy")
    [check] = [entry for entry in flux_kustomization()["spec"]["healthCheckExprs"] if entry["kind"] == kind]
    environment = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}
    for outcome, field in (("InProgress", "inProgress"), ("Failed", "failed"), ("Current", "current")):
        if field not in check:
            continue
        try:
            answer = environment.program(environment.compile(check[field])).evaluate(activation)
        except celpy.CELEvalError:
            return "InProgress"
        if isinstance(answer, celpy.CELEvalError):
            return "InProgress"
        if answer:
            return outcome
    return "InProgress"


def test_the_flux_kustomization_checks_every_kind() -> None:
    spec = flux_kustomization()["spec"]
    assert spec["wait"] is True
    assert {(entry["apiVersion"], entry["kind"]) for entry in spec["healthCheckExprs"]} == {
        (f"{GROUP}/v1alpha1", kind) for kind in SCRIPTS
    }


@pytest.mark.parametrize("kind", [*READY_KINDS, "Invocation"])
def test_flux_expressions_follow_the_conditions(kind: str) -> None:
    assert flux_health(kind, an_object(kind, condition(kind, "True"))) == "Current"
    assert flux_health(kind, an_object(kind, condition(kind, "False"))) == "Failed"
    assert flux_health(kind, an_object(kind, condition(kind, "Unknown"))) == "InProgress"
    assert flux_health(kind, an_object(kind)) == "InProgress"


# On the API servers: health of the objects the operator acted on, and no drift ---------------------


def kubectl(cluster: RunningSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """The kubectl on PATH (`make test` puts the control plane's first) against the cluster."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("no kubectl on PATH")
    env = {**os.environ, "KUBECONFIG": str(cluster.sandbox.kubeconfig)}
    return subprocess.run(
        [binary, *args, "-n", cluster.namespace], env=env, capture_output=True, text=True, timeout=60
    )


def judged(cluster: RunningSandbox, plural: str, name: str) -> dict[str, Any]:
    """The object once the operator has written its Ready condition for the current generation."""

    def found() -> dict[str, Any] | None:
        obj = kube.get_custom(plural, cluster.namespace, name) or {}
        generation = obj.get("metadata", {}).get("generation")
        conditions = (obj.get("status") or {}).get("conditions") or []
        current = [
            c for c in conditions if c["type"] == "Ready" and c.get("observedGeneration") == generation
        ]
        return obj if current and current[0]["status"] != "Unknown" else None

    return wait_for(found, 60, f"{plural}/{name} to have a Ready condition")


def test_the_samples_are_healthy_and_do_not_drift_once_the_operator_acted(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    # A namespace of their own, where only `kubectl apply -k` ever wrote them (as Argo CD or Flux do).
    namespace = f"gitops-{secrets.token_hex(3)}"
    kube.core().create_namespace({"metadata": {"name": namespace}})
    cluster = RunningSandbox(cluster.sandbox, namespace)
    applied = kubectl(cluster, "apply", "-k", str(SAMPLES))
    assert applied.returncode == 0, applied.stderr
    wait_for(lambda: _claimed(namespace), 60, "the record's claim")
    clip = make_sample_video(tmp_path / "drive.mp4", width=64, height=48, frames=4, fps=4)
    [uploaded] = cluster.upload("recordings", clip)
    run = cluster.run_of(uploaded.path)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    acted = {kind: judged(cluster, plural, name) for kind, plural, name in SAMPLE_NAMES}

    # No drift, whichever way the Git copy is applied: client-side (kubectl's last-applied
    # annotation) or server-side (field managers). The two are not mixed: a server-side diff of
    # objects applied client-side proposes rewriting kubectl's own last-applied annotation.
    for apply, diff in ((("apply",), ("diff",)), (("apply", "--server-side"), ("diff", "--server-side"))):
        again = kubectl(cluster, *apply, "-k", str(SAMPLES))
        assert again.returncode == 0, again.stderr
        shown = kubectl(cluster, *diff, "-k", str(SAMPLES))
        assert (shown.returncode, shown.stderr) == (0, ""), shown.stdout

    # What the operator wrote besides the status: the README's list.
    kubectl_annotations = {"kubectl.kubernetes.io/last-applied-configuration"}
    kopf_annotations = {"autoscene.io/last-handled-configuration", "autoscene.io/kopf-managed"}
    for git in sample_manifests():
        live = kube.get_custom(READY_KINDS[git["kind"]], cluster.namespace, git["metadata"]["name"])
        assert live is not None
        meta = live["metadata"]
        assert meta.get("labels", {}) == git["metadata"].get("labels", {}), git["kind"]
        written = set(meta.get("annotations") or {}) - kubectl_annotations
        assert written == (kopf_annotations if git["kind"] == "Record" else set()), git["kind"]
        assert not meta.get("finalizers"), git["kind"]

    # Health as Argo CD and Flux would show it.
    for kind, obj in {**acted, "Invocation": run}.items():
        health = argo_health(kind, obj)
        assert health["status"] == "Healthy", (kind, health, obj.get("status"))
        assert health["message"], kind
        if HAS_CEL:
            assert flux_health(kind, obj) == "Current", kind


def _claimed(namespace: str) -> str | None:
    record = kube.get_custom("records", namespace, "recordings") or {}
    return (record.get("status") or {}).get("claimName")


def test_kubectl_applies_over_what_the_sandbox_applied_without_a_warning_or_a_change(
    sandbox: RunningSandbox,
) -> None:
    """The sandbox applies the samples as `kubectl apply` does, last-applied annotation included, so the
    README's `kubectl apply -k manifests/samples` on a running sandbox warns of nothing and changes
    nothing. (kubectl may still say "configured": the server's defaults in a list's items, such as a
    parameter's `required: false`, make it send the whole list again, on any cluster.)"""
    applied = kubectl(sandbox, "apply", "-k", str(SAMPLES))
    assert (applied.returncode, applied.stderr) == (0, ""), applied.stderr
    shown = kubectl(sandbox, "diff", "-k", str(SAMPLES))
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stdout
