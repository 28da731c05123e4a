"""The embedded API server, exercised through real clients: the kubernetes client, kopf and kubectl."""

import json
import os
import shutil
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from autoscene.sandbox.apiserver import EmbeddedApiServer, write_kubeconfig
from autoscene.sandbox.apiserver_http import WatchLines
from autoscene.sandbox.apiserver_patches import strategic_merge_patch
from autoscene.sandbox.apiserver_printers import human_duration
from autoscene.sandbox.apiserver_store import ObjectStore
from autoscene.sandbox.apiserver_tables import json_path_value
from autoscene.sandbox.controlplane import KUBE_VERSION

GROUP, VERSION, PLURAL = "example.com", "v1", "widgets"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
Found = TypeVar("Found")

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "Widget",
            "plural": PLURAL,
            "singular": "widget",
            "shortNames": ["wd"],
            "categories": ["gadgets"],
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "color": {"type": "string", "default": "blue"},
                                    "size": {"type": "integer"},
                                },
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def wait_for(condition: Callable[[], Found | None], timeout: float = 5.0) -> Found:
    deadline = time.monotonic() + timeout
    while True:
        if (found := condition()) is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("the condition was not met in time")
        time.sleep(0.02)


def status_of(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body or "{}")


@pytest.fixture
def server() -> Iterator[EmbeddedApiServer]:
    with EmbeddedApiServer() as running:
        yield running


@pytest.fixture
def api(server: EmbeddedApiServer) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    configuration.host = server.url
    with client.ApiClient(configuration) as api_client:
        yield api_client


# The client's models are strictly typed, but its methods take plain dicts as well, which the tests use:
# hence the APIs are typed as Any here.


@pytest.fixture
def core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


def extensions_of(api: client.ApiClient) -> Any:
    return client.ApiextensionsV1Api(api)


def custom_objects_of(api: client.ApiClient) -> Any:
    return client.CustomObjectsApi(api)


@pytest.fixture
def widgets(api: client.ApiClient) -> Any:
    extensions_of(api).create_custom_resource_definition(WIDGET_CRD)
    return custom_objects_of(api)


def configmap(name: str, labels: dict[str, str] | None = None, **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}, **metadata}, "data": {"key": "value"}}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def owned_by(owner: Any) -> list[dict[str, Any]]:
    metadata = owner.metadata
    return [{"apiVersion": "v1", "kind": "ConfigMap", "name": metadata.name, "uid": metadata.uid}]


# Discovery and metadata.


def test_discovery_serves_core_and_groups(server: EmbeddedApiServer, core: Any) -> None:
    assert {ns.metadata.name for ns in core.list_namespace().items} >= {"default", "kube-system"}
    core_v1 = requests.get(f"{server.url}/api/v1", timeout=5).json()
    assert core_v1["groupVersion"] == "v1"
    assert {"pods", "pods/status", "pods/log", "namespaces", "events"} <= {
        r["name"] for r in core_v1["resources"]
    }
    groups = {group["name"] for group in requests.get(f"{server.url}/apis", timeout=5).json()["groups"]}
    assert {"batch", "coordination.k8s.io", "apiextensions.k8s.io"} <= groups
    assert requests.get(f"{server.url}/version", timeout=5).json()["major"] == "1"


def test_create_assigns_metadata(core: Any) -> None:
    created = core.create_namespaced_config_map("default", configmap("a"))
    generated = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}})
    assert created.metadata.uid and created.metadata.namespace == "default"
    assert created.metadata.generation == 1
    assert created.metadata.creation_timestamp is not None
    assert int(generated.metadata.resource_version) > int(created.metadata.resource_version)
    assert generated.metadata.name.startswith("gen-") and len(generated.metadata.name) == len("gen-") + 5
    raw = requests.get(
        f"{core.api_client.configuration.host}/api/v1/namespaces/default/configmaps/a", timeout=5
    )
    assert raw.json()["metadata"]["creationTimestamp"].endswith("Z")


def test_create_errors(core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a"))
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map("default", configmap("a"))
    with pytest.raises(ApiException) as elsewhere:
        core.create_namespaced_config_map("default", configmap("b", namespace="other"))
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map("nowhere", configmap("c"))
    assert (exists.value.status, status_of(exists.value)["reason"]) == (409, "AlreadyExists")
    assert elsewhere.value.status == 400
    assert no_namespace.value.status == 404


def test_missing_object_is_a_not_found_status(core: Any) -> None:
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("absent", "default")
    status = status_of(missing.value)
    assert missing.value.status == 404
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "NotFound", 404)
    assert status["details"] == {"name": "absent", "kind": "configmaps"}


def test_list_carries_kind_api_version_and_revision(server: EmbeddedApiServer, core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a"))
    listing = requests.get(f"{server.url}/api/v1/namespaces/default/configmaps", timeout=5).json()
    assert (listing["kind"], listing["apiVersion"]) == ("ConfigMapList", "v1")
    assert int(listing["metadata"]["resourceVersion"]) >= int(
        listing["items"][0]["metadata"]["resourceVersion"]
    )


# Selectors.


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", {"a"}),
        ("tier==web", {"a"}),
        ("tier!=web", {"b", "c"}),
        ("tier in (web, db)", {"a", "b"}),
        ("tier notin (web)", {"b", "c"}),
        ("tier", {"a", "b"}),
        ("!tier", {"c"}),
        ("tier=db,zone=x", {"b"}),
    ],
)
def test_label_selectors(core: Any, selector: str, expected: set[str]) -> None:
    core.create_namespaced_config_map("default", configmap("a", {"tier": "web"}))
    core.create_namespaced_config_map("default", configmap("b", {"tier": "db", "zone": "x"}))
    core.create_namespaced_config_map("default", configmap("c", {"zone": "x"}))
    found = core.list_namespaced_config_map("default", label_selector=selector).items
    assert {item.metadata.name for item in found} == expected


def test_field_selectors(core: Any) -> None:
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_config_map("default", configmap("a"))
    core.create_namespaced_config_map("other", configmap("a"))
    core.create_namespaced_config_map("other", configmap("b"))
    by_name = core.list_config_map_for_all_namespaces(field_selector="metadata.name=a").items
    not_default = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace!=default").items
    assert {(item.metadata.namespace, item.metadata.name) for item in by_name} == {
        ("default", "a"),
        ("other", "a"),
    }
    assert {item.metadata.name for item in not_default} == {"a", "b"}
    core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": []}})
    assert len(core.list_namespaced_pod("default", field_selector="status.phase=Pending").items) == 1
    assert not core.list_namespaced_pod("default", field_selector="status.phase==Running").items


# Writes.


def test_patch_content_types(core: Any) -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
    }
    core.create_namespaced_pod("default", pod)
    patched = core.patch_namespaced_pod(
        "p",
        "default",
        {"metadata": {"labels": {"merged": "yes"}}},
        _content_type="application/merge-patch+json",
    )
    assert patched.metadata.labels == {"merged": "yes"}
    strategic = core.patch_namespaced_pod(
        "p",
        "default",
        {"spec": {"containers": [{"name": "b", "image": "z"}]}},
        _content_type="application/strategic-merge-patch+json",
    )
    assert [(c.name, c.image) for c in strategic.spec.containers] == [("a", "x"), ("b", "z")]
    operations = [{"op": "add", "path": "/metadata/annotations", "value": {"json": "patch"}}]
    json_patched = core.patch_namespaced_pod(
        "p", "default", operations, _content_type="application/json-patch+json"
    )
    assert json_patched.metadata.annotations == {"json": "patch"}


def test_server_side_apply_creates_then_merges(server: EmbeddedApiServer) -> None:
    url = f"{server.url}/api/v1/namespaces/default/configmaps/applied?fieldManager=test"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    created = requests.patch(
        url, data="apiVersion: v1\nkind: ConfigMap\ndata: {a: '1'}\n", headers=headers, timeout=5
    )
    merged = requests.patch(url, data="data: {b: '2'}\n", headers=headers, timeout=5)
    assert created.status_code == 201
    assert merged.status_code == 200 and merged.json()["data"] == {"a": "1", "b": "2"}


def test_no_op_writes_change_nothing(core: Any) -> None:
    created = core.create_namespaced_config_map("default", configmap("a"))
    unchanged = core.patch_namespaced_config_map("a", "default", {"data": {"key": "value"}})
    assert unchanged.metadata.resource_version == created.metadata.resource_version


def test_dry_run_stores_nothing(core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a"), dry_run="All")
    assert not core.list_namespaced_config_map("default").items


def test_secret_string_data_is_encoded(core: Any) -> None:
    created = core.create_namespaced_secret("default", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert (created.data, created.string_data) == ({"k": "dg=="}, None)


def test_failed_json_patch_test_is_422(core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a"))
    operations = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    with pytest.raises(ApiException) as failed:
        core.patch_namespaced_config_map(
            "a", "default", operations, _content_type="application/json-patch+json"
        )
    assert failed.value.status == 422


def test_stale_resource_version_conflicts(core: Any) -> None:
    created = core.create_namespaced_config_map("default", configmap("a"))
    core.patch_namespaced_config_map("a", "default", {"data": {"key": "newer"}})
    stale = {"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"key": "stale"}}
    with pytest.raises(ApiException) as patching:
        core.patch_namespaced_config_map("a", "default", stale)
    created.data = {"key": "stale"}
    with pytest.raises(ApiException) as replacing:
        core.replace_namespaced_config_map("a", "default", created)
    assert (patching.value.status, status_of(patching.value)["reason"]) == (409, "Conflict")
    assert replacing.value.status == 409
    assert core.read_namespaced_config_map("a", "default").data == {"key": "newer"}


def test_replace_keeps_identity_and_counts_generations(widgets: Any) -> None:
    created = widgets.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w", size=1))
    labelled = widgets.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w", {"metadata": {"labels": {"a": "b"}}}
    )
    version = labelled["metadata"]["resourceVersion"]  # a custom object is replaced from a known version
    replaced = widgets.replace_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "w",
        {**widget("w", size=2), "metadata": {"name": "w", "resourceVersion": version}},
    )
    assert labelled["metadata"]["generation"] == 1
    assert replaced["metadata"]["generation"] == 2
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert replaced["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert replaced["spec"] == {"size": 2, "color": "blue"}


def test_status_subresource_separates_status(widgets: Any) -> None:
    body = {**widget("w", size=1), "status": {"phase": "Injected"}}
    created = widgets.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert "status" not in created
    with_status = widgets.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w", {"status": {"phase": "Ready"}, "spec": {"size": 99}}
    )
    assert (with_status["status"], with_status["spec"]["size"]) == ({"phase": "Ready"}, 1)
    assert with_status["metadata"]["generation"] == 1
    assert int(with_status["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    main = widgets.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w", {"status": {"phase": "Ignored"}, "spec": {"size": 2}}
    )
    assert (main["status"], main["spec"]["size"], main["metadata"]["generation"]) == (
        {"phase": "Ready"},
        2,
        2,
    )


def test_custom_objects_get_schema_defaults_and_pruning(widgets: Any) -> None:
    created = widgets.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, widget("w", size=1, unknown="dropped")
    )
    assert created["spec"] == {"size": 1, "color": "blue"}


# Deletion and garbage collection.


def test_finalizers_hold_deletion_until_removed(server: EmbeddedApiServer, core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a", finalizers=["example.com/hold"]))
    deleted = requests.delete(f"{server.url}/api/v1/namespaces/default/configmaps/a", timeout=5)
    assert deleted.status_code == 200 and deleted.json()["metadata"]["deletionTimestamp"]
    assert core.read_namespaced_config_map("a", "default").metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("a", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("a", "default")
    assert gone.value.status == 404


def test_no_finalizer_can_be_added_while_deleting(core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a", finalizers=["example.com/hold"]))
    core.delete_namespaced_config_map("a", "default")
    with pytest.raises(ApiException) as forbidden:
        core.patch_namespaced_config_map(
            "a", "default", {"metadata": {"finalizers": ["example.com/hold", "new"]}}
        )
    assert forbidden.value.status == 422


def test_delete_collection_by_label(core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a", {"batch": "1"}))
    core.create_namespaced_config_map("default", configmap("b", {"batch": "1"}))
    core.create_namespaced_config_map("default", configmap("c", {"batch": "2"}))
    core.delete_collection_namespaced_config_map("default", label_selector="batch=1")
    assert [item.metadata.name for item in core.list_namespaced_config_map("default").items] == ["c"]


def test_garbage_collection_cascades(core: Any) -> None:
    owner = core.create_namespaced_config_map("default", configmap("owner"))
    child = core.create_namespaced_config_map("default", configmap("child", owner_references=owned_by(owner)))
    core.create_namespaced_config_map("default", configmap("grandchild", owner_references=owned_by(child)))
    core.create_namespaced_config_map("default", configmap("unrelated"))
    core.delete_namespaced_config_map("owner", "default")
    assert [item.metadata.name for item in core.list_namespaced_config_map("default").items] == ["unrelated"]


def test_orphan_propagation_releases_dependents(core: Any) -> None:
    owner = core.create_namespaced_config_map("default", configmap("owner"))
    core.create_namespaced_config_map("default", configmap("child", owner_references=owned_by(owner)))
    core.delete_namespaced_config_map("owner", "default", propagation_policy="Orphan")
    assert core.read_namespaced_config_map("child", "default").metadata.owner_references is None


def test_dependents_of_several_owners_outlive_one(core: Any) -> None:
    first = core.create_namespaced_config_map("default", configmap("first"))
    second = core.create_namespaced_config_map("default", configmap("second"))
    references = owned_by(first) + owned_by(second)
    core.create_namespaced_config_map("default", configmap("shared", owner_references=references))
    core.delete_namespaced_config_map("first", "default")
    remaining = core.read_namespaced_config_map("shared", "default").metadata.owner_references
    assert [reference.name for reference in remaining] == ["second"]
    core.delete_namespaced_config_map("second", "default")
    assert not core.list_namespaced_config_map("default").items


def test_namespace_deletion_deletes_its_content(core: Any) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", configmap("a"))
    core.create_namespaced_config_map("doomed", configmap("held", finalizers=["example.com/hold"]))
    core.delete_namespace("doomed")
    assert core.read_namespace("doomed").status.phase == "Terminating"
    assert [item.metadata.name for item in core.list_namespaced_config_map("doomed").items] == ["held"]
    with pytest.raises(ApiException) as forbidden:
        core.create_namespaced_config_map("doomed", configmap("late"))
    assert forbidden.value.status == 403
    core.patch_namespaced_config_map("held", "doomed", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        core.read_namespace("doomed")
    assert gone.value.status == 404
    with pytest.raises(ApiException) as protected:
        core.delete_namespace("default")
    assert protected.value.status == 403


# Watching.


def test_watch_replays_only_newer_events(core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("before"))
    since = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", configmap("after"))
    core.patch_namespaced_config_map("after", "default", {"data": {"key": "changed"}})
    core.delete_namespaced_config_map("before", "default")
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=since, timeout_seconds=1
    )
    events = [(event["type"], event["object"].metadata.name) for event in stream]
    assert events == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]


def test_watch_without_revision_starts_with_current_objects(core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a"))
    started = time.monotonic()
    events = list(watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=1))
    assert [(event["type"], event["object"].metadata.name) for event in events] == [("ADDED", "a")]
    assert time.monotonic() - started > 0.9  # the stream stayed open until timeoutSeconds ended it


def test_watch_sees_live_changes_through_a_label_selector(core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a", {"app": "x"}))
    seen: list[tuple[str, str | None]] = []

    def consume() -> None:
        stream = watch.Watch().stream(
            core.list_namespaced_config_map, "default", label_selector="app=x", timeout_seconds=1
        )
        seen.extend((event["type"], event["object"].metadata.labels.get("app")) for event in stream)

    watcher = threading.Thread(target=consume)
    watcher.start()
    wait_for(lambda: seen or None)
    core.create_namespaced_config_map("default", configmap("b", {"app": "x"}))
    core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"app": "y"}}})
    core.create_namespaced_config_map("default", configmap("c", {"app": "other"}))
    watcher.join()
    assert seen == [("ADDED", "x"), ("ADDED", "x"), ("DELETED", "y")]


def test_watch_marks_the_end_of_initial_events(server: EmbeddedApiServer, core: Any) -> None:
    core.create_namespaced_config_map("default", configmap("a"))
    query = {"watch": "true", "sendInitialEvents": "true", "timeoutSeconds": "1"}
    response = requests.get(f"{server.url}/api/v1/namespaces/default/configmaps", params=query, timeout=5)
    events = [json.loads(line) for line in response.text.splitlines()]
    assert [event["type"] for event in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_content_type_and_expired_revision() -> None:
    running = EmbeddedApiServer()
    running.emulator.store = ObjectStore(history_limit=3)
    with running:
        for index in range(5):
            requests.post(
                f"{running.url}/api/v1/namespaces/default/configmaps", json=configmap(f"c{index}"), timeout=5
            )
        query = {"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"}
        response = requests.get(
            f"{running.url}/api/v1/namespaces/default/configmaps", params=query, timeout=5
        )
    assert response.headers["Content-Type"].startswith("application/json")
    event = json.loads(response.text.splitlines()[0])
    assert (event["type"], event["object"]["code"], event["object"]["reason"]) == ("ERROR", 410, "Expired")


def test_stop_is_fast_with_open_watches() -> None:
    running = EmbeddedApiServer()
    url = running.start()
    responses: list[requests.Response] = []
    watcher = threading.Thread(
        target=lambda: responses.append(requests.get(f"{url}/api/v1/configmaps?watch=true", timeout=10))
    )
    watcher.start()
    time.sleep(0.2)
    running.stop()
    watcher.join(timeout=5)
    assert not watcher.is_alive()  # stopping ended the open watch instead of waiting for its timeout
    assert responses and responses[0].status_code == 200


# Custom resources.


def test_crd_makes_its_resource_served(server: EmbeddedApiServer, api: client.ApiClient) -> None:
    extensions = extensions_of(api)
    created = extensions.create_custom_resource_definition(WIDGET_CRD)
    crd = wait_for(lambda: extensions.read_custom_resource_definition(created.metadata.name))
    conditions = {condition.type: condition.status for condition in crd.status.conditions}
    assert conditions == {"Established": "True", "NamesAccepted": "True"}
    assert crd.status.accepted_names.short_names == ["wd"]
    resources = requests.get(f"{server.url}/apis/{GROUP}/{VERSION}", timeout=5).json()["resources"]
    assert {(r["name"], r["kind"], r["namespaced"]) for r in resources} >= {("widgets", "Widget", True)}
    assert "widgets/status" in {r["name"] for r in resources}
    assert GROUP in {
        group["name"] for group in requests.get(f"{server.url}/apis", timeout=5).json()["groups"]
    }
    custom = custom_objects_of(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w"))
    extensions.delete_custom_resource_definition(created.metadata.name)
    with pytest.raises(ApiException) as unserved:
        custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert unserved.value.status == 404


def test_versions_of_a_crd_share_objects(api: client.ApiClient) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD))
    crd["spec"]["versions"].append({**crd["spec"]["versions"][0], "name": "v2", "storage": False})
    extensions_of(api).create_custom_resource_definition(crd)
    custom = custom_objects_of(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w", size=1))
    seen_as_v2 = custom.get_namespaced_custom_object(GROUP, "v2", "default", PLURAL, "w")
    assert (seen_as_v2["apiVersion"], seen_as_v2["spec"]["size"]) == (f"{GROUP}/v2", 1)


def test_cluster_scoped_crd(api: client.ApiClient) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD))
    crd["spec"]["scope"] = "Cluster"
    extensions_of(api).create_custom_resource_definition(crd)
    custom = custom_objects_of(api)
    created = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, widget("global"))
    assert "namespace" not in created["metadata"]
    assert [
        item["metadata"]["name"]
        for item in custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    ] == ["global"]


def test_tables_print_the_crd_columns(server: EmbeddedApiServer, widgets: Any) -> None:
    widgets.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w", size=3))
    url = f"{server.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
    table = requests.get(url, headers={"Accept": TABLE}, timeout=5).json()
    assert table["kind"] == "Table"
    assert [column["name"] for column in table["columnDefinitions"]] == [
        "Name",
        "Color",
        "Size",
        "Phase",
        "Age",
    ]
    name, color, size, phase, age = table["rows"][0]["cells"]
    assert (name, color, size, phase) == ("w", "blue", 3, None)
    assert age.endswith("s")
    assert table["rows"][0]["object"]["metadata"]["name"] == "w"
    watched = requests.get(f"{url}?watch=true&timeoutSeconds=1", headers={"Accept": TABLE}, timeout=5).text
    event = json.loads(watched.splitlines()[0])
    assert (event["type"], event["object"]["kind"], event["object"]["rows"][0]["cells"][0]) == (
        "ADDED",
        "Table",
        "w",
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".spec.size", 3),
        ("{.spec.size}", 3),
        ('.status.conditions[?(@.type=="Ready")].status', "True"),
        (".status.conditions[1].type", "Done"),
        (".status.conditions[*].type", "Ready"),
        (".metadata.labels.app\\.kubernetes\\.io/name", "demo"),
        (".metadata.labels['app.kubernetes.io/name']", "demo"),
        (".spec.absent", None),
    ],
)
def test_printer_column_paths(path: str, expected: Any) -> None:
    obj = {
        "metadata": {"labels": {"app.kubernetes.io/name": "demo"}},
        "spec": {"size": 3},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Done", "status": "False"}]},
    }
    assert json_path_value(obj, path) == expected


@pytest.mark.parametrize(
    ("seconds", "age"),
    [(5, "5s"), (119, "119s"), (185, "3m5s"), (3600, "60m"), (4 * 3600 + 60, "4h1m"), (3 * 86400, "3d")],
)
def test_ages_read_like_kubectl(seconds: float, age: str) -> None:
    assert human_duration(seconds) == age


def test_strategic_merge_directives() -> None:
    current = {"metadata": {"finalizers": ["a", "b"]}, "spec": {"env": [{"name": "X", "value": "1"}]}}
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]},
        "spec": {"$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "$patch": "delete"}]},
    }
    assert strategic_merge_patch(current, patch) == {
        "metadata": {"finalizers": ["b", "c"]},
        "spec": {"env": []},
    }


def test_bad_selectors_are_400(core: Any) -> None:
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_config_map("default", label_selector="a in (b")
    assert bad.value.status == 400


# Pods.


def test_pod_log_serves_the_recorded_text(server: EmbeddedApiServer, core: Any) -> None:
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    )
    assert core.read_namespaced_pod_log("p", "default") == ""
    server.set_pod_log("default", "p", "one\ntwo\nthree\n")
    assert core.read_namespaced_pod_log("p", "default") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("p", "default", tail_lines=1) == "three\n"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod_log("absent", "default")
    assert missing.value.status == 404


def test_pod_log_follows_until_the_pod_finishes(server: EmbeddedApiServer, core: Any) -> None:
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    )
    server.set_pod_log("default", "p", "first\n")

    def finish() -> None:
        time.sleep(0.3)
        server.set_pod_log("default", "p", "first\nsecond\n")
        time.sleep(0.3)
        core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Succeeded"}})

    finisher = threading.Thread(target=finish)
    finisher.start()
    followed = requests.get(f"{server.url}/api/v1/namespaces/default/pods/p/log?follow=true", timeout=5)
    finisher.join()
    assert followed.text == "first\nsecond\n"


# Other URLs.


def test_other_urls_go_to_kmock_reactions_without_history(server: EmbeddedApiServer) -> None:
    server.emulator["get /metrics"] << b"requests 1"
    assert requests.get(f"{server.url}/metrics", timeout=5).text == "requests 1"
    assert requests.get(f"{server.url}/unknown", timeout=5).status_code == 404
    assert not server.emulator._requests


# Scale.


def test_a_thousand_objects_leave_no_request_history(server: EmbeddedApiServer) -> None:
    with requests.Session() as session:
        for index in range(1000):
            url = f"{server.url}/api/v1/namespaces/default/configmaps"
            assert session.post(url, json=configmap(f"c{index}"), timeout=5).status_code == 201
        for index in range(0, 1000, 10):
            url = f"{server.url}/api/v1/namespaces/default/configmaps/c{index}"
            assert (
                session.patch(
                    url,
                    json={"data": {"n": str(index)}},
                    timeout=5,
                    headers={
                        "Content-Type": "application/merge-patch+json",
                    },
                ).status_code
                == 200
            )
        listing = session.get(f"{server.url}/api/v1/namespaces/default/configmaps", timeout=5).json()
    assert len(listing["items"]) == 1000
    assert not server.emulator._requests  # no request history is kept


# kopf.


OPERATOR = """
import pathlib
import kopf

@kopf.on.login()
def login(**kwargs):
    return kopf.login_via_client(**kwargs)  # reads $KUBECONFIG

@kopf.on.startup()
def configure(settings, **_):
    settings.watching.server_timeout = 10

@kopf.on.create("{group}", "{version}", "{plural}")
def created(spec, patch, **_):
    patch.status["phase"] = "Ready"
    patch.status["observedSize"] = spec.get("size")

@kopf.on.delete("{group}", "{version}", "{plural}")
def deleted(name, **_):
    pathlib.Path({marker!r}).write_text(name)
"""


@pytest.fixture
def kopf_registry() -> Iterator[Any]:
    """A registry for this test's handlers; other operators in this process keep the default one."""
    import kopf

    default = kopf.get_default_registry()
    yield kopf.OperatorRegistry()
    kopf.set_default_registry(default)  # `kopf run` made the test's registry the default


def test_kopf_operator_handles_creation_and_deletion(
    server: EmbeddedApiServer,
    widgets: Any,
    kopf_registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kopf.testing import KopfRunner
    from kubernetes.config import kube_config

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    marker = tmp_path / "deleted"
    operator = tmp_path / "operator.py"
    operator.write_text(OPERATOR.format(group=GROUP, version=VERSION, plural=PLURAL, marker=str(marker)))

    def read() -> dict[str, Any]:
        return widgets.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w")

    command = ["run", "-A", "--standalone", str(operator)]
    with KopfRunner(command, registry=kopf_registry, timeout=10) as runner:
        widgets.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w", size=7))
        handled = wait_for(lambda: read() if read().get("status", {}).get("phase") == "Ready" else None)
        assert handled["status"]["observedSize"] == 7
        assert handled["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        widgets.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w")
        wait_for(lambda: marker.exists() or None)
        remaining = wait_for(
            lambda: (
                widgets.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"] == []
                or None
            )
        )
        assert remaining
    assert runner.exception is None
    assert marker.read_text() == "w"


# kubectl.

requires_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


@pytest.fixture
def kubectl(server: EmbeddedApiServer, tmp_path: Path) -> Callable[..., str]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)

    def run(*args: str, stdin: str | None = None) -> str:
        command = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), *args]
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=20, env=os.environ
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


MANIFESTS = textwrap.dedent("""
    apiVersion: example.com/v1
    kind: Widget
    metadata: {name: small}
    spec: {size: 1}
    ---
    apiVersion: example.com/v1
    kind: Widget
    metadata: {name: large, labels: {tier: gold}}
    spec: {size: 10, color: red}
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: settings}
    data: {mode: fast}
""")


@requires_kubectl
def test_kubectl_apply_get_and_delete(kubectl: Callable[..., str]) -> None:
    assert "created" in kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(WIDGET_CRD))
    assert kubectl("apply", "--validate=false", "-f", "-", stdin=MANIFESTS).count("created") == 3
    reapplied = kubectl(
        "apply", "--validate=false", "-f", "-", stdin=MANIFESTS.replace("size: 1}", "size: 2}")
    )
    assert "widget.example.com/small configured" in reapplied and "configmap/settings unchanged" in reapplied
    listed = json.loads(kubectl("get", PLURAL, "-o", "json"))
    assert {item["metadata"]["name"]: item["spec"]["size"] for item in listed["items"]} == {
        "small": 2,
        "large": 10,
    }
    header, *rows = kubectl("get", "wd").splitlines()
    assert header.split() == ["NAME", "COLOR", "SIZE", "PHASE", "AGE"]
    assert [row.split()[:3] for row in rows] == [["large", "red", "10"], ["small", "blue", "2"]]
    assert kubectl("get", "gadgets", "-l", "tier=gold", "-o", "name").split() == ["widget.example.com/large"]
    kubectl(
        "patch", "wd", "small", "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Ready"}}'
    )
    assert kubectl("get", "wd", "small", "-o", "jsonpath={.status.phase}") == "Ready"
    assert "deleted" in kubectl("delete", "wd", "small", "large")
    assert kubectl("get", "wd", "-o", "name") == ""


@requires_kubectl
def test_kubectl_typed_commands_and_validation(kubectl: Callable[..., str]) -> None:
    assert kubectl("create", "namespace", "team") == "namespace/team created\n"
    kubectl("-n", "team", "create", "configmap", "settings", "--from-literal=mode=fast")
    kubectl("-n", "team", "create", "secret", "generic", "token", "--from-literal=key=s3cret")
    kubectl("-n", "team", "create", "serviceaccount", "robot")
    assert json.loads(kubectl("-n", "team", "get", "configmap", "settings", "-o", "json"))["data"] == {
        "mode": "fast"
    }
    assert kubectl("-n", "team", "get", "secret", "token", "-o", "jsonpath={.data.key}") == "czNjcmV0"
    assert "created" in kubectl("apply", "-f", "-", stdin=yaml.safe_dump(WIDGET_CRD))  # validation on, served
    assert 'namespace "team" deleted' in kubectl("delete", "namespace", "team")
    assert "team" not in kubectl("get", "namespaces", "-o", "name")


@requires_kubectl
def test_kubectl_reads_pods_and_logs(server: EmbeddedApiServer, kubectl: Callable[..., str]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c"}]},
    }
    kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(pod))
    server.set_pod_log("default", "p", "hello from the pod\n")
    assert kubectl("logs", "p") == "hello from the pod\n"
    assert kubectl("get", "pods").splitlines()[1].split()[:4] == ["p", "0/1", "Pending", "0"]


def test_each_change_is_encoded_once_for_all_its_watchers() -> None:
    lines = WatchLines(kept=2)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u1", "resourceVersion": "7"}}
    first = lines.line("MODIFIED", pod)
    assert json.loads(first) == {"type": "MODIFIED", "object": pod} and first.endswith(b"\n")
    assert lines.line("MODIFIED", dict(pod)) is first  # another watcher, the same change
    assert json.loads(lines.line("DELETED", pod))["type"] == "DELETED"  # left a selection: its own line
    changed = {**pod, "metadata": {**pod["metadata"], "resourceVersion": "8"}, "spec": {"x": 1}}
    assert json.loads(lines.line("MODIFIED", changed))["object"]["spec"] == {"x": 1}
    assert lines.line("MODIFIED", pod) is not first  # the oldest line was let go of (kept=2)


@requires_kubectl
def test_kubectl_of_the_control_planes_release_warns_of_no_version_skew(
    server: EmbeddedApiServer, tmp_path: Path
) -> None:
    """kubectl warns on every command when the server is more than one minor release away from it
    ("version difference between client and server exceeds the supported minor version skew")."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "version", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    client_version = json.loads(done.stdout)["clientVersion"]["gitVersion"]
    if not client_version.startswith(KUBE_VERSION.rpartition(".")[0] + "."):
        pytest.skip(f"kubectl on PATH is {client_version}; the control plane's release is {KUBE_VERSION}")
    assert "version difference" not in done.stderr, done.stderr
