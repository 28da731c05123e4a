"""`kubectl apply` for the sandbox: create or replace manifests, validated against our CRDs first.

The embedded API server has no admission: the CRD schema check a real API server does is done here,
so an invalid manifest is refused in the sandbox as it would be on a cluster.
"""

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import GROUP, VERSION, schemas
from .apiserver_patches import merge_patch

KUSTOMIZATION = "kustomization.yaml"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
PLURALS = {
    "Action": "actions",
    "Trigger": "triggers",
    "Record": "records",
    "RecordFile": "recordfiles",
    "Invocation": "invocations",
}


class InvalidManifestError(ValueError):
    """A manifest the API server would refuse."""


def documents(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a YAML file, of a kustomization folder (see `kustomized`), or of a folder's
    YAML files."""
    if (path / KUSTOMIZATION).is_file():
        yield from kustomized(path)
        return
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    for file in files:
        if file.name == KUSTOMIZATION:
            continue
        for document in yaml.safe_load_all(file.read_text()):
            if document:
                yield document


def kustomized(folder: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize folder` renders, for the part of kustomize the samples use:
    `resources` (files and folders) and `patches` given by file, each applied as a JSON merge patch to
    the object of its kind and name (what kustomize does for custom resources). Read here because the
    sandbox runs without kubectl; any other field of the kustomization is refused, not ignored."""
    kustomization = yaml.safe_load((folder / KUSTOMIZATION).read_text()) or {}
    unsupported = sorted(set(kustomization) - {"apiVersion", "kind", "resources", "patches"})
    if unsupported:
        raise ValueError(f"{folder / KUSTOMIZATION}: the sandbox cannot render {', '.join(unsupported)}")
    objects = [
        obj for resource in kustomization.get("resources") or [] for obj in documents(folder / resource)
    ]
    for patch in kustomization.get("patches") or []:
        body = yaml.safe_load((folder / patch["path"]).read_text())
        target = patch.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
        matched = [obj for obj in objects if _is_target(obj, target)]
        if not matched:
            raise ValueError(f"{folder / patch['path']}: no {target['kind']} {target['name']} to patch")
        objects = [merge_patch(obj, body) if _is_target(obj, target) else obj for obj in objects]
    return objects


def _is_target(obj: Mapping[str, Any], target: Mapping[str, str]) -> bool:
    return obj.get("kind") == target.get("kind") and obj["metadata"].get("name") == target.get("name")


def apply(
    api: client.ApiClient,
    objects: Iterable[Mapping[str, Any]],
    crds: Mapping[Any, Any],
    namespace: str = "default",
) -> list[str]:
    """Create each object, or replace it when it exists; `kind/name` of each, in order."""
    applied = []
    for obj in objects:
        kind = obj["kind"]
        if kind == "CustomResourceDefinition":
            _create_or_replace_crd(client.ApiextensionsV1Api(api), obj)
        elif obj.get("apiVersion") == f"{GROUP}/{VERSION}" and kind in PLURALS:
            errors = schemas.validate(dict(obj), crds)
            if errors:
                raise InvalidManifestError(
                    f"{kind} {obj['metadata'].get('name')!r} is invalid: " + "; ".join(errors)
                )
            _create_or_replace_custom(client.CustomObjectsApi(api), obj, namespace)
        else:
            raise InvalidManifestError(
                f"the sandbox applies CRDs and autoscene objects, not {kind}; use kubectl"
            )
        applied.append(f"{kind.lower()}/{obj['metadata']['name']}")
    return applied


def with_last_applied(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as a client-side `kubectl apply` writes it: annotated with itself as applied
    (`kubectl.kubernetes.io/last-applied-configuration`: that annotation left out, compact JSON with
    sorted keys and a newline, as kubectl's Go encoder writes it), which the next `kubectl apply` merges
    from; without it kubectl warns that the annotation is missing."""
    annotations = {
        key: value for key, value in (obj["metadata"].get("annotations") or {}).items() if key != LAST_APPLIED
    }
    applied = {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}
    text = json.dumps(applied, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    return {**obj, "metadata": {**obj["metadata"], "annotations": {**annotations, LAST_APPLIED: text}}}


def _create_or_replace_crd(api: client.ApiextensionsV1Api, crd: Mapping[str, Any]) -> None:
    crd = with_last_applied(crd)
    try:
        api.create_custom_resource_definition(crd)
    except ApiException as error:
        if error.status != 409:
            raise
        current = api.read_custom_resource_definition(crd["metadata"]["name"])
        body = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current.metadata.resource_version}}
        api.replace_custom_resource_definition(crd["metadata"]["name"], body)


def _create_or_replace_custom(
    api: client.CustomObjectsApi, obj: Mapping[str, Any], default_namespace: str
) -> None:
    namespace = obj["metadata"].get("namespace") or default_namespace
    plural, name = PLURALS[obj["kind"]], obj["metadata"]["name"]
    body = with_last_applied({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    except ApiException as error:
        if error.status != 409:
            raise
        current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        api.replace_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)
