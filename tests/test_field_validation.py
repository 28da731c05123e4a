"""Unknown and repeated fields of a written object, as the `fieldValidation` parameter asks the API
server to treat them, on both servers: the embedded sandbox and the real control plane.

Kubernetes docs: "API Concepts", "Field validation": `Strict` refuses the request ("strict decoding
error: unknown field …"), `Warn` (the default) stores the object pruned and answers a `Warning: 299`
header for each field, `Ignore` prunes silently. `kubectl apply` sends `Strict` (its default
`--validate=strict`); a server-side apply refuses unknown fields whatever the level. The answers
checked here are kube-apiserver v1.37's, word for word.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscene import GROUP, VERSION, kube
from autoscene.sandbox.apiserver_http import first_unknown_of_each_object
from autoscene.sandbox.apiserver_schema import unknown_fields
from autoscene.sandbox.session import wait_for

from .conftest import ApiNamespace
from .test_conformance import blob_crd_created, trigger

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
CANNOT_HANDLE = 'Trigger in version "v1alpha1" cannot be handled as a Trigger: strict decoding error: '
TYPO = 'unknown field "spec.fileGlobb"'


class Answer:
    """An HTTP answer: its status, its `Warning` headers (each unquoted), and its JSON body."""

    def __init__(self, status: int, warnings: list[str], body: dict[str, Any]) -> None:
        self.status, self.warnings, self.body = status, warnings, body


class Server:
    """One API server under test, with a fresh namespace, spoken to in plain HTTP requests (the
    client's methods neither send every body as it is written nor show the answer's headers)."""

    def __init__(self, kind: str, namespace: str, kubeconfig: Path) -> None:
        self.kind, self.namespace, self.kubeconfig = kind, namespace, kubeconfig

    def request(
        self, method: str, path: str, body: Any, validation: str | None = None, content_type: str = JSON
    ) -> Answer:
        api = kube.api_client()
        configuration = api.configuration
        headers = {"Content-Type": content_type, "Accept": JSON}
        for setting in configuration.auth_settings().values():
            headers[setting["key"]] = setting["value"]
        query = "?fieldManager=test" + (f"&fieldValidation={validation}" if validation else "")
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        # Asked once: the client's retries of a 5xx (kube.RETRIES) would repeat a server-side apply's
        # refusal (a 500) for seconds.
        answer = api.rest_client.pool_manager.request(
            method, configuration.host + path + query, body=data, headers=headers, retries=False
        )
        warnings = [json.loads(header.removeprefix("299 - ")) for header in answer.headers.getlist("Warning")]
        try:
            body = json.loads(answer.data or b"{}")
        except ValueError:
            body = {"text": answer.data.decode()}  # e.g. "404 page not found" before a resource is served
        return Answer(answer.status, warnings, body)

    def triggers(self, name: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/triggers"
        return f"{path}/{name}" if name else path

    def configmaps(self, name: str = "") -> str:
        path = f"/api/v1/namespaces/{self.namespace}/configmaps"
        return f"{path}/{name}" if name else path

    def create(self, body: dict[str, Any], validation: str | None = None) -> Answer:
        return self.request("POST", self.triggers(), {"apiVersion": f"{GROUP}/{VERSION}", **body}, validation)

    def get(self, name: str) -> Answer:
        return self.request("GET", self.triggers(name), b"")


@pytest.fixture
def server(api_namespace: ApiNamespace) -> Server:
    return Server(api_namespace.kind, api_namespace.namespace, api_namespace.kubeconfig)


def refused(answer: Answer, code: int, reason: str | None, message: str) -> dict[str, Any]:
    assert (answer.status, answer.body.get("code"), answer.body.get("reason")) == (code, code, reason)
    assert answer.body["message"] == message
    return answer.body


# Creating and updating -------------------------------------------------------------------------------


def test_strict_refuses_an_unknown_field_and_stores_nothing(server: Server) -> None:
    body = trigger("typo", fileGlobb="*.mkv")
    answer = refused(server.create(body, "Strict"), 400, "BadRequest", CANNOT_HANDLE + TYPO)
    assert "details" not in answer
    as_yaml = yaml.safe_dump({"apiVersion": f"{GROUP}/{VERSION}", **body}).encode()
    answer = server.request("POST", server.triggers(), as_yaml, "Strict", "application/yaml")
    refused(answer, 400, "BadRequest", CANNOT_HANDLE + TYPO)
    assert server.get("typo").status == 404


def test_strict_names_every_unknown_field_those_of_the_metadata_first(server: Server) -> None:
    # An owner that exists: the garbage collector deletes an object whose owners are all gone.
    owner = server.request(
        "POST", server.configmaps(), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    )
    uid = owner.body["metadata"]["uid"]
    body = trigger("typos", fileGlobb="*.mkv", recordSelector={"matchLabelz": {"a": "b"}, "zz": 1})
    body["metadata"].update(
        labelz={"a": "b"},
        annotationz={"a": "b"},
        ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": uid, "bogus": 1}],
    )
    body.update(extra=1, aaa=1)
    unknown = [
        "metadata.annotationz",
        "metadata.labelz",
        "metadata.ownerReferences[0].bogus",
        "aaa",
        "extra",
        "spec.fileGlobb",
        "spec.recordSelector.matchLabelz",
        "spec.recordSelector.zz",
    ]
    problems = [f'unknown field "{path}"' for path in unknown]
    refused(server.create(body, "Strict"), 400, "BadRequest", CANNOT_HANDLE + ", ".join(problems))
    warned = server.create(body)
    assert warned.status == 201 and warned.warnings == problems
    stored = server.get("typos").body
    assert "labelz" not in stored["metadata"] and "annotationz" not in stored["metadata"]
    assert stored["metadata"]["ownerReferences"][0] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "x",
        "uid": uid,
    }
    assert "extra" not in stored and stored["spec"]["recordSelector"] == {}


def test_warn_is_the_default_and_ignore_is_silent(server: Server) -> None:
    for validation, warnings in ((None, [TYPO]), ("Warn", [TYPO]), ("Ignore", [])):
        name = f"written-{(validation or 'default').lower()}"
        answer = server.create(trigger(name, fileGlobb="*.mkv"), validation)
        assert (answer.status, answer.warnings) == (201, warnings)
        assert "fileGlobb" not in answer.body["spec"]
        assert "fileGlobb" not in server.get(name).body["spec"]


def test_an_update_under_strict_is_refused_whole_status_included(server: Server) -> None:
    assert server.create(trigger("updated")).status == 201
    current = server.get("updated").body
    typo = {**current, "spec": {**current["spec"], "fileGlobb": "*.mkv"}}
    refused(
        server.request("PUT", server.triggers("updated"), typo, "Strict"),
        400,
        "BadRequest",
        CANNOT_HANDLE + TYPO,
    )
    status = {**current, "status": {"bogus": 1}}
    answer = server.request("PUT", server.triggers("updated") + "/status", status, "Strict")
    refused(answer, 400, "BadRequest", CANNOT_HANDLE + 'unknown field "status.bogus"')
    for _ in range(5):  # on the real plane the operator writes the Trigger's status meanwhile: 409
        current = server.get("updated").body
        typo = {**current, "spec": {**current["spec"], "fileGlobb": "*.mkv"}}
        warned = server.request("PUT", server.triggers("updated"), typo)
        if warned.status != 409:
            break
    assert (warned.status, warned.warnings) == (200, [TYPO])
    assert "fileGlobb" not in server.get("updated").body["spec"]


def test_a_null_is_not_an_unknown_field(server: Server) -> None:
    answer = server.create(trigger("nulled", suspend=None), "Strict")
    assert (answer.status, answer.warnings) == (201, [])
    assert answer.body["spec"]["suspend"] is False


def test_an_unsupported_level_is_refused(server: Server) -> None:
    why = 'Unsupported value: "strict": supported values: "", "Ignore", "Strict", "Warn"'
    answer = refused(
        server.create(trigger("lower"), "strict"),
        422,
        "Invalid",
        f'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: {why}',
    )
    assert answer["details"] == {
        "group": "meta.k8s.io",
        "kind": "CreateOptions",
        "causes": [{"reason": "FieldValueNotSupported", "message": why, "field": "fieldValidation"}],
    }


def test_repeated_fields_of_a_json_body(server: Server) -> None:
    text = json.dumps({"apiVersion": f"{GROUP}/{VERSION}", **trigger("repeated")})
    text = text.replace('"fileGlob": "*.mp4"', '"fileGlob": "*.mp4", "fileGlob": "*.mkv"')
    answer = server.request("POST", server.triggers(), text.encode(), "Strict")
    refused(answer, 400, "BadRequest", CANNOT_HANDLE + 'duplicate field "spec.fileGlob"')
    warned = server.request("POST", server.triggers(), text.encode(), "Warn")
    assert (warned.status, warned.warnings) == (201, ['duplicate field "spec.fileGlob"'])
    assert warned.body["spec"]["fileGlob"] == "*.mkv"  # the last one


def test_a_schema_that_preserves_unknown_fields_has_none(server: Server) -> None:
    group = blob_crd_created()
    blob = {"apiVersion": f"{group}/v1", "kind": "Blob", "metadata": {"name": "free"}, "any": {"thing": 1}}
    blobs = f"/apis/{group}/v1/namespaces/{server.namespace}/blobs"

    def created() -> Answer | None:
        answer = server.request("POST", blobs, blob, "Strict")
        return None if answer.status == 404 else answer  # 404 until the new resource is served

    answer = wait_for(created, 30, "the Blob resource to be served")
    assert (answer.status, answer.warnings, answer.body["any"]) == (201, [], {"thing": 1})
    blob = {**blob, "metadata": {"name": "meta", "labelz": {}}}
    answer = server.request("POST", blobs, blob, "Strict")
    refused(
        answer,
        400,
        "BadRequest",
        'Blob in version "v1" cannot be handled as a Blob: strict decoding error: '
        'unknown field "metadata.labelz"',
    )


def test_a_builtin_kind_has_unknown_metadata_fields(server: Server) -> None:
    """Built-in kinds have no schema in the embedded server: only their metadata is checked there."""
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typo", "labelz": {}}}
    answer = server.request("POST", server.configmaps(), configmap, "Strict")
    refused(
        answer,
        400,
        "BadRequest",
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "metadata.labelz"',
    )
    configmap["metadata"] = {"name": "typo"}
    assert server.request("POST", server.configmaps(), configmap, "Strict").status == 201
    patch = {"metadata": {"labelz": {"a": "b"}}}
    answer = server.request("PATCH", server.configmaps("typo"), patch, "Strict", STRATEGIC_MERGE_PATCH)
    why = (
        'Invalid value: "map[metadata:map[labelz:map[a:b]]]": '
        'strict decoding error: unknown field "metadata.labelz"'
    )
    answer = refused(answer, 422, "Invalid", f' "" is invalid: patch: {why}')
    assert answer["details"] == {
        "causes": [{"reason": "FieldValueInvalid", "message": why, "field": "patch"}]
    }


# Patching --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "patch"),
    [
        (MERGE_PATCH, {"spec": {"fileGlobb": "*.mkv"}}),
        (JSON_PATCH, [{"op": "add", "path": "/spec/fileGlobb", "value": "*.mkv"}]),
    ],
)
def test_a_patch_under_strict_is_refused_quoting_the_patched_object(
    server: Server, content_type: str, patch: Any
) -> None:
    assert server.create(trigger("patched")).status == 201
    answer = server.request("PATCH", server.triggers("patched"), patch, "Strict", content_type)
    assert (answer.status, answer.body["reason"]) == (422, "Invalid")
    [cause] = answer.body["details"]["causes"]
    assert (cause["field"], cause["reason"]) == ("patch", "FieldValueInvalid")
    assert answer.body["message"] == f' "" is invalid: patch: {cause["message"]}'
    prefix, suffix = "Invalid value: ", f": strict decoding error: {TYPO}"
    assert cause["message"].startswith(prefix) and cause["message"].endswith(suffix)
    quoted = json.loads(json.loads(cause["message"].removeprefix(prefix).removesuffix(suffix)))
    assert quoted["spec"]["fileGlobb"] == "*.mkv" and quoted["metadata"]["name"] == "patched"
    warned = server.request("PATCH", server.triggers("patched"), patch, None, content_type)
    assert (warned.status, warned.warnings) == (200, [TYPO])
    assert "fileGlobb" not in server.get("patched").body["spec"]


@pytest.mark.parametrize("validation", ["Strict", "Warn", "Ignore"])
def test_a_server_side_apply_refuses_unknown_fields_at_any_level(server: Server, validation: str) -> None:
    assert server.create(trigger("existing")).status == 201
    for name in ("existing", "missing"):
        applied = {"apiVersion": f"{GROUP}/{VERSION}", **trigger(name, fileGlobb="*.mkv")}
        answer = server.request("PATCH", server.triggers(name), applied, validation, APPLY_PATCH)
        refused(
            answer,
            500,
            None,
            f"failed to create typed patch object (/{name}; {GROUP}/{VERSION}, Kind=Trigger): "
            ".spec.fileGlobb: field not declared in schema",
        )
    # Of several, kube-apiserver names the first of each object in its (Go map's, random) order.
    applied = {"apiVersion": f"{GROUP}/{VERSION}", **trigger("missing", zz=1)}
    applied.update(extra=1)
    answer = server.request("PATCH", server.triggers("missing"), applied, validation, APPLY_PATCH)
    prefix = f"failed to create typed patch object (/missing; {GROUP}/{VERSION}, Kind=Trigger): "
    assert answer.status == 500 and answer.body["message"].startswith(prefix)
    named = {line.strip() for line in answer.body["message"].removeprefix(prefix).split("\n")} - {"errors:"}
    assert named and named <= {
        ".extra: field not declared in schema",
        ".spec.zz: field not declared in schema",
    }
    assert server.get("missing").status == 404


# kubectl ---------------------------------------------------------------------------------------------


def test_kubectl_apply_refuses_a_manifest_with_an_unknown_field(server: Server, tmp_path: Path) -> None:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("no kubectl on PATH")
    manifest = tmp_path / "trigger.yaml"
    manifest.write_text(
        yaml.safe_dump({"apiVersion": f"{GROUP}/{VERSION}", **trigger("applied", fileGlobb="*.mkv")})
    )

    def kubectl_apply(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "apply", "-n", server.namespace, "-f", str(manifest), *options],
            env={"KUBECONFIG": str(server.kubeconfig), "HOME": str(tmp_path)},  # its cache in tmp_path
            capture_output=True,
            text=True,
            timeout=60,
        )

    client_side = kubectl_apply()
    assert client_side.returncode == 1
    assert f"Error from server (BadRequest): error when creating {str(manifest)!r}".replace("'", '"') in (
        client_side.stderr
    )
    assert CANNOT_HANDLE + TYPO in client_side.stderr
    server_side = kubectl_apply("--server-side")
    assert server_side.returncode == 1
    assert (
        f"Error from server: failed to create typed patch object ({server.namespace}/applied; "
        f"{GROUP}/{VERSION}, Kind=Trigger): .spec.fileGlobb: field not declared in schema"
    ) in server_side.stderr
    warned = kubectl_apply("--validate=warn")
    assert warned.returncode == 0, warned.stderr
    assert f"Warning: {TYPO}" in warned.stderr
    assert "fileGlobb" not in server.get("applied").body["spec"]


# The rules on their own (no server) ------------------------------------------------------------------


def test_unknown_fields_follow_the_structural_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {}}},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"a": {}}}},
                    "nullable": {"type": "string"},
                },
            }
        },
    }
    obj = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "x", "labels": {}, "managedFields": [{"manager": "m", "bogus": 1}]},
        "spec": {
            "free": {"anything": {"at": "all"}},
            "map": {"k": {"inner": 1}},
            "list": [{"a": 1}, {"b": 2}],
            "nullable": None,
        },
    }
    assert unknown_fields(obj, schema) == [
        "metadata.managedFields[0].bogus",
        "spec.list[1].b",
        "spec.map.k.inner",
    ]
    assert unknown_fields(obj, None) == ["metadata.managedFields[0].bogus"]  # a built-in kind: metadata only


def test_a_server_side_apply_names_the_first_unknown_field_of_each_object() -> None:
    assert first_unknown_of_each_object(["spec.zz", "extra"]) == ["extra"]
    assert first_unknown_of_each_object(["spec.a", "spec.b.c", "status.x"]) == ["spec.a", "status.x"]
