"""CEL rules of the CRDs (`x-kubernetes-validations`), on the embedded API server and on Kubernetes' own.

Each rejection is checked on both servers against the same expected answer, worded as kube-apiserver
v1.37 words it (status 422, reason Invalid, one `FieldValueInvalid` cause per failed rule), through
the Python client and through `kubectl apply`; one test sends the same requests to both servers and
compares the answers whole. The rules' evaluation itself (paths, values in messages, ratcheting) is
unit-tested on `autoscene.sandbox.apiserver_cel` at the end.
"""

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from autoscene import GROUP, VERSION, kube
from autoscene.sandbox import apiserver_cel
from autoscene.sandbox.realcluster import RealCluster
from autoscene.sandbox.session import Sandbox

from .conftest import ApiNamespace, namespace_on

API_VERSION = f"{GROUP}/{VERSION}"
NOT_CHECKED = (
    "Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


class Server:
    """One API server under test, with a fresh namespace, its kubeconfig and a kubectl for it."""

    def __init__(self, kind: str, kubeconfig: Path, namespace: str, cache: Path) -> None:
        self.kind, self.kubeconfig, self.namespace, self.cache = kind, kubeconfig, namespace, cache
        self.custom = kube.custom()

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": API_VERSION,
            **body,
            "metadata": {"namespace": self.namespace, **body["metadata"]},
        }
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body))

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, body)
        )

    def replace(self, plural: str, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """PUT of the object as read now, changed by `change`; again if the operator wrote it meanwhile."""
        for _ in range(5):
            current = dict(
                self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
            )
            change(current)
            try:
                return dict(
                    self.custom.replace_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, plural, name, current
                    )
                )
            except ApiException as error:
                if error.status != 409:
                    raise
        raise AssertionError(f"{plural}/{name} kept changing")

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.skip("kubectl is not installed")
        command = [binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache), *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)

    def apply(self, *objects: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` as a user runs it: client-side apply, the default validation."""
        stream = yaml.safe_dump_all([{"apiVersion": API_VERSION, **obj} for obj in objects])
        return self.kubectl("apply", "-n", self.namespace, "-f", "-", stdin=stream)


def _server(made: ApiNamespace, cache: Path) -> Server:
    return Server(made.kind, made.kubeconfig, made.namespace, cache)


@pytest.fixture
def server(api_namespace: ApiNamespace, tmp_path: Path) -> Server:
    return _server(api_namespace, tmp_path / "kubectl-cache")


def rejection(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as raised:
        call()
    answer = dict(json.loads(raised.value.body))
    assert answer["code"] == raised.value.status
    return answer


def record(name: str, **storage: Any) -> dict[str, Any]:
    return {"kind": "Record", "metadata": {"name": name}, "spec": {"storage": storage}}


def trigger(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Trigger",
        "metadata": {"name": name},
        "spec": {"action": "a", "fileGlob": "*.mp4", **spec},
    }


def invocation(name: str, **spec: Any) -> dict[str, Any]:
    body = {"action": "a", "record": "r", "file": "day1/cam0.mp4", **spec}
    return {"kind": "Invocation", "metadata": {"name": name}, "spec": body}


def invalid(kind: str, name: str, *causes: tuple[str, str]) -> dict[str, Any]:
    """The 422 Status kube-apiserver answers for failed rules: (field, message) per cause."""
    listed = [f"{field}: {message}" for field, message in causes]
    why = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'{kind}.{GROUP} "{name}" is invalid: {why}',
        "reason": "Invalid",
        "details": {
            "name": name,
            "group": GROUP,
            "kind": kind,
            "causes": [
                {
                    "reason": "FieldValueRequired" if message == "Required value" else "FieldValueInvalid",
                    "message": message,
                    "field": field,
                }
                for field, message in causes
            ],
        },
        "code": 422,
    }


BOTH = "Invalid value: set exactly one of size or claimName, not both"
NONE = "Invalid value: set exactly one of size or claimName (none is set)"
RETENTION = "Invalid value: set keepLast, maxAgeDays or both"
IMMUTABLE = "Invalid value: spec is immutable"
GLOB = 'must be a relative path pattern: no "/" at its start or end, no empty, "." or ".." folder'

# (plural, object, expected answer) of objects that break one rule each.
BAD_OBJECTS = [
    (
        "records",
        record("both", size="10Gi", claimName="shared"),
        invalid("Record", "both", ("spec.storage", BOTH)),
    ),
    ("records", record("neither"), invalid("Record", "neither", ("spec.storage", NONE))),
    (
        "triggers",
        trigger("keep-all", retention={}),
        invalid("Trigger", "keep-all", ("spec.retention", RETENTION)),
    ),
    (
        "triggers",
        trigger("up-a-folder", fileGlob="../*.mp4"),
        invalid("Trigger", "up-a-folder", ("spec.fileGlob", f'Invalid value: "../*.mp4": {GLOB}')),
    ),
    (
        "triggers",
        trigger("odd-excludes", exclude=["._*", "day1//x", "/abs", "raw/"]),
        invalid(
            "Trigger",
            "odd-excludes",
            *(
                (f"spec.exclude[{i}]", f'Invalid value: "{glob}": {GLOB}')
                for i, glob in ((1, "day1//x"), (2, "/abs"), (3, "raw/"))
            ),
        ),
    ),
]


# Through the Python client ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "body", "expected"), BAD_OBJECTS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_an_object_breaking_a_rule_is_refused_with_its_message(
    server: Server, plural: str, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert rejection(lambda: server.create(plural, body)) == expected


def test_objects_keeping_the_rules_are_accepted(server: Server) -> None:
    server.create("records", record("sized", size="1Gi"))
    server.create("records", record("claimed", claimName="shared"))
    server.create("triggers", trigger("pruned", retention={"keepLast": 10}))
    server.create("triggers", trigger("aged", retention={"maxAgeDays": 30, "keepLast": 5}))
    server.create("triggers", trigger("unbounded"))
    for index, glob in enumerate(["**", ".*", "._*", "..x/*.mp4", "raw/**/*.{mp4,MP4}", "[!.]*"]):
        server.create("triggers", trigger(f"glob-{index}", fileGlob=glob, exclude=[glob]))


def test_rules_hold_on_update_and_patch(server: Server) -> None:
    server.create("records", record("grown", size="1Gi"))
    answer = rejection(
        lambda: server.patch("records", "grown", {"spec": {"storage": {"claimName": "other"}}})
    )
    assert answer == invalid("Record", "grown", ("spec.storage", BOTH))
    assert rejection(
        lambda: server.replace("records", "grown", lambda obj: obj["spec"].update(storage={}))
    ) == invalid("Record", "grown", ("spec.storage", NONE))
    server.create("triggers", trigger("bounded", retention={"keepLast": 3}))
    answer = rejection(
        lambda: server.patch("triggers", "bounded", {"spec": {"retention": {"keepLast": None}}})
    )
    assert answer == invalid("Trigger", "bounded", ("spec.retention", RETENTION))


def test_an_invocations_spec_cannot_change(server: Server) -> None:
    server.create("invocations", invocation("once"))
    answer = rejection(lambda: server.patch("invocations", "once", {"spec": {"file": "day2/cam0.mp4"}}))
    assert answer == invalid("Invocation", "once", ("spec", IMMUTABLE))
    hashed = rejection(
        lambda: server.replace("invocations", "once", lambda obj: obj["spec"].update(sha256="0" * 64))
    )
    assert hashed == invalid("Invocation", "once", ("spec", IMMUTABLE))
    # Its metadata and status still change; a write that leaves the spec as it is passes the rule.
    labelled = server.patch("invocations", "once", {"metadata": {"labels": {"kept": "yes"}}})
    assert labelled["metadata"]["labels"]["kept"] == "yes"  # beside the operator's own labels
    status = server.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, server.namespace, "invocations", "once", {"status": {"message": "noted"}}
    )
    assert status["status"]["message"] == "noted"
    server.patch("invocations", "once", {"spec": {"file": "day1/cam0.mp4"}})


def test_schema_errors_come_first_and_type_errors_leave_the_rules_unchecked(server: Server) -> None:
    # An error that does not stop CEL (a pattern): the schema's cause, then the rule's.
    answer = rejection(
        lambda: server.create("triggers", trigger("both-wrong", action="Not_A_Name", retention={}))
    )
    assert [(cause["field"], cause["reason"]) for cause in answer["details"]["causes"]] == [
        ("spec.action", "FieldValueInvalid"),
        ("spec.retention", "FieldValueInvalid"),
    ]
    assert answer["details"]["causes"][1]["message"] == RETENTION
    # A missing required field stops CEL, and the API server says that rules were not checked.
    no_action = trigger("no-action", retention={})
    del no_action["spec"]["action"]
    answer = rejection(lambda: server.create("triggers", no_action))
    assert answer == invalid(
        "Trigger", "no-action", ("spec.action", "Required value"), ("<nil>", NOT_CHECKED)
    )


def _answers_to_bad_requests(server: Server) -> list[dict[str, Any]]:
    requests: list[tuple[str, dict[str, Any]]] = [
        ("records", record("both", size="1Gi", claimName="c")),
        ("records", record("neither", accessMode="ReadWriteOnce")),
        ("triggers", trigger("keep-all", retention={})),
        ("triggers", trigger("bad-type", retention={}, suspend="yes")),
        ("triggers", trigger("bad-action", retention={}, action="Not_A_Name")),
    ]
    answers = [rejection(lambda p=plural, b=body: server.create(p, b)) for plural, body in requests]
    server.create("invocations", invocation("fixed"))
    answers.append(rejection(lambda: server.patch("invocations", "fixed", {"spec": {"file": "x"}})))
    return answers


def test_the_same_requests_get_the_same_answers_from_both_servers(
    bare_sandbox: Sandbox, real_cluster: RealCluster, tmp_path: Path
) -> None:
    answers: dict[str, list[dict[str, Any]]] = {}
    for kind, running in (("embedded", bare_sandbox), ("real", real_cluster)):
        with namespace_on(kind, running) as made:
            answers[kind] = _answers_to_bad_requests(_server(made, tmp_path / kind))

    def comparable(answer: dict[str, Any]) -> tuple[Any, ...]:
        # The schema validators word pattern errors each in their own way; the rules' causes must match.
        causes = answer["details"]["causes"]
        ruled = [cause for cause in causes if cause["field"] != "spec.action"]
        return answer["code"], answer["reason"], [cause["field"] for cause in causes], ruled

    assert [comparable(a) for a in answers["embedded"]] == [comparable(a) for a in answers["real"]]


# Through kubectl apply -------------------------------------------------------------------------------


def test_kubectl_apply_refuses_objects_breaking_rules(server: Server) -> None:
    for _, body, expected in BAD_OBJECTS:
        done = server.apply(body)
        assert done.returncode != 0, done.stdout
        details, causes = expected["details"], expected["details"]["causes"]
        said = f'The {details["kind"]} "{details["name"]}" is invalid: '
        if len(causes) == 1:
            said += f"{causes[0]['field']}: {causes[0]['message']}"
        assert said in done.stderr, done.stderr
        for cause in causes:  # several: one line each, "* field: message"
            assert f"{cause['field']}: {cause['message']}" in done.stderr, done.stderr
    done = server.apply(record("sized", size="1Gi"), trigger("pruned", retention={"keepLast": 10}))
    assert done.returncode == 0, done.stderr
    assert "record.autoscene.io/sized created" in done.stdout


def test_kubectl_apply_cannot_change_an_invocation(server: Server) -> None:
    done = server.apply(invocation("applied"))
    assert done.returncode == 0, done.stderr
    assert server.apply(invocation("applied")).returncode == 0  # unchanged: nothing to refuse
    done = server.apply(invocation("applied", file="other.mp4"))
    assert done.returncode != 0
    assert 'The Invocation "applied" is invalid: spec: Invalid value: spec is immutable' in done.stderr
    done = server.kubectl("label", "-n", server.namespace, "invocation", "applied", "reviewed=yes")
    assert done.returncode == 0, done.stderr


# The rules' evaluation, without a server --------------------------------------------------------------

PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.a > 0"},
                {"rule": "self.b == 'x'", "messageExpression": "'b is ' + self.b"},
            ],
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": "string"},
                "n": {
                    "type": "integer",
                    "x-kubernetes-validations": [{"rule": "self > 5", "message": "small"}],
                },
                "f": {"type": "boolean", "x-kubernetes-validations": [{"rule": "self"}]},
                "m": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "string",
                        "x-kubernetes-validations": [{"rule": "self != 'bad'", "message": "no bad"}],
                    },
                },
                "l": {
                    "type": "array",
                    "x-kubernetes-validations": [{"rule": "size(self) > 5", "message": "short"}],
                    "items": {
                        "type": "string",
                        "x-kubernetes-validations": [{"rule": "self != 'bad'", "message": "no bad"}],
                    },
                },
                "env": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "self.value == oldSelf.value", "message": "value is immutable"}
                        ],
                        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                    },
                },
            },
        }
    },
}


def test_rules_are_reported_at_their_field_as_kube_apiserver_reports_them() -> None:
    # What kube-apiserver v1.37 answered for the same schema and object (causes' order aside: it walks
    # Go maps).
    obj = {"spec": {"b": "y", "n": 3, "f": False, "m": {"k1": "bad"}, "l": ["ok", "bad"]}}
    found = {(v.field, v.message) for v in apiserver_cel.violations(obj, PROBE_SCHEMA)}
    assert found == {
        ("spec", 'Invalid value: "object": no such key: a evaluating rule: self.a > 0'),
        ("spec", "Invalid value: b is y"),
        ("spec.n", "Invalid value: 3: small"),
        ("spec.f", "Invalid value: false: failed rule: self"),
        ("spec.m[k1]", 'Invalid value: "bad": no bad'),
        ("spec.l", "Invalid value: short"),
        ("spec.l[1]", 'Invalid value: "bad": no bad'),
    }


def test_transition_rules_compare_with_the_old_item_of_the_same_key() -> None:
    old = {"spec": {"a": 1, "b": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}}
    new = {"spec": {"a": 1, "b": "x", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}}
    assert apiserver_cel.violations(new, PROBE_SCHEMA, old) == [
        apiserver_cel.RuleViolation("spec.env[0]", "Invalid value: value is immutable")
    ]
    assert apiserver_cel.violations(new, PROBE_SCHEMA) == []  # on create there is nothing to compare with


def test_unchanged_values_keep_passing_on_update() -> None:
    # Validation ratcheting: a value stored before a rule existed may stay; changing it must fix it.
    old = {"spec": {"a": 1, "b": "x", "n": 3}}
    assert apiserver_cel.violations({"spec": {"a": 1, "b": "x", "n": 3}}, PROBE_SCHEMA, old) == []
    assert apiserver_cel.violations({"spec": {"a": 1, "b": "x", "n": 4}}, PROBE_SCHEMA, old) == [
        apiserver_cel.RuleViolation("spec.n", "Invalid value: 4: small")
    ]


def test_rules_of_the_crds_are_found() -> None:
    for name, has in (("invocations", True), ("records", True), ("triggers", True), ("actions", False)):
        crd = yaml.safe_load((Path(__file__).resolve().parents[1] / "crds" / f"{name}.yaml").read_text())
        assert apiserver_cel.has_rules(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) is has
