"""Resource types the embedded API server serves: the built-in ones, those declared by CRDs, discovery."""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kmock import KubernetesError

from . import apiserver_printers as printers

#: The Kubernetes release this server answers as (`/version`, the OpenAPI document): the one its
#: behaviour is checked against (the real control plane of tests/test_conformance.py), so that kubectl
#: of that release sees no version skew.
KUBERNETES_RELEASE = "v1.37.2"

GroupResource = tuple[str, str]  # (group, plural): objects are shared by all served versions
ResourceKey = tuple[str, str, str]  # (group, version, plural): one served endpoint

MAIN_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = {"status": ("get", "patch", "update"), "log": ("get",), "exec": ("create", "get")}


@dataclass(frozen=True)
class PrinterColumn:
    """One column of `kubectl get`, as a CRD's `additionalPrinterColumns` entry declares it."""

    name: str
    type: str
    json_path: str
    format: str = ""
    description: str = ""
    priority: int = 0
    # For a built-in kind's column that no JSONPath gives (apiserver_printers): (object, now) → cell.
    derive: Callable[[Mapping[str, Any], datetime], Any] | None = field(default=None, compare=False)


AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    printer_columns: tuple[PrinterColumn, ...] = (AGE_COLUMN,)
    name_priority: int = 0  # 1: NAME only with `-o wide` (Events)
    schema: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return self.group, self.version

    @property
    def group_resource(self) -> GroupResource:
        return self.group, self.plural

    @property
    def key(self) -> ResourceKey:
        return self.group, self.version, self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _column(name: str, json_path: str, type: str = "string", priority: int = 0) -> PrinterColumn:
    return PrinterColumn(name, type, json_path, priority=priority)


def _printed(
    name: str, derive: Callable[[Mapping[str, Any], datetime], Any], priority: int = 0
) -> PrinterColumn:
    return PrinterColumn(name, "string", "", priority=priority, derive=derive)


BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        subresources=frozenset({"status"}),
        printer_columns=(_column("Status", ".status.phase"), AGE_COLUMN),
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        namespaced=True,
        short_names=("po",),
        categories=("all",),
        subresources=frozenset({"status", "log", "exec"}),
        printer_columns=(
            _printed("Ready", printers.pod_ready),
            _printed("Status", printers.pod_status),
            _printed("Restarts", printers.pod_restarts),
            AGE_COLUMN,
            _column("IP", ".status.podIP", priority=1),
            _column("Node", ".spec.nodeName", priority=1),
        ),
    ),
    ResourceType(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        namespaced=True,
        short_names=("pvc",),
        subresources=frozenset({"status"}),
        printer_columns=(
            _column("Status", ".status.phase"),
            _column("Volume", ".spec.volumeName"),
            _column("Capacity", ".status.capacity.storage"),
            _column("StorageClass", ".spec.storageClassName"),
            AGE_COLUMN,
        ),
    ),
    ResourceType(
        "",
        "v1",
        "events",
        "Event",
        namespaced=True,
        short_names=("ev",),
        printer_columns=(
            _printed("Last Seen", printers.event_last_seen),
            _column("Type", ".type"),
            _column("Reason", ".reason"),
            _printed("Object", printers.event_object),
            _column("Message", ".message"),
        ),
        name_priority=1,
    ),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True, short_names=("sa",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", namespaced=True, short_names=("cm",)),
    ResourceType(
        "",
        "v1",
        "secrets",
        "Secret",
        namespaced=True,
        printer_columns=(_column("Type", ".type"), AGE_COLUMN),
    ),
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "Job",
        namespaced=True,
        categories=("all",),
        subresources=frozenset({"status"}),
        printer_columns=(
            _printed("Status", printers.job_status),
            _printed("Completions", printers.job_completions),
            _printed("Duration", printers.job_duration),
            AGE_COLUMN,
        ),
    ),
    ResourceType(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        namespaced=True,
        printer_columns=(_column("Holder", ".spec.holderIdentity"), AGE_COLUMN),
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        subresources=frozenset({"status"}),
        printer_columns=(PrinterColumn("Created At", "string", ".metadata.creationTimestamp"),),
    ),
)

CRD_GROUP_RESOURCE: GroupResource = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES: GroupResource = ("", "namespaces")
PODS: GroupResource = ("", "pods")
EVENTS: GroupResource = ("", "events")
SECRETS: GroupResource = ("", "secrets")


def singular_of(resource: ResourceType) -> str:
    return resource.singular or resource.kind.lower()


# Errors, shaped as the real API server's `Status` bodies so clients map them to their own exceptions.


def api_error(code: int, reason: str, message: str, **details: Any) -> KubernetesError:
    return KubernetesError(status=code, reason=reason, message=message, details=details)


def _describe(resource: ResourceType | GroupResource) -> dict[str, str]:
    group, plural = resource.group_resource if isinstance(resource, ResourceType) else resource
    return {"group": group, "kind": plural} if group else {"kind": plural}


def _qualified(resource: ResourceType | GroupResource) -> str:
    group, plural = resource.group_resource if isinstance(resource, ResourceType) else resource
    return f"{plural}.{group}" if group else plural


def not_found(resource: ResourceType | GroupResource, name: str) -> KubernetesError:
    message = f'{_qualified(resource)} "{name}" not found'
    return api_error(404, "NotFound", message, name=name, **_describe(resource))


def already_exists(resource: ResourceType, name: str) -> KubernetesError:
    message = f'{_qualified(resource)} "{name}" already exists'
    return api_error(409, "AlreadyExists", message, name=name, **_describe(resource))


def conflict(resource: ResourceType, name: str, why: str) -> KubernetesError:
    message = f'Operation cannot be fulfilled on {_qualified(resource)} "{name}": {why}'
    return api_error(409, "Conflict", message, name=name, **_describe(resource))


def invalid(
    resource: ResourceType, name: str, why: str, causes: list[dict[str, str]] | None = None
) -> KubernetesError:
    """422 Invalid, as the API server words it: `Kind.group "name" is invalid: field: message`, the
    details naming the kind (not the resource) and one cause per field."""
    kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    details: dict[str, Any] = {"name": name, "kind": resource.kind}
    if resource.group:
        details["group"] = resource.group
    if causes:
        details["causes"] = causes
    return api_error(422, "Invalid", f'{kind} "{name}" is invalid: {why}', **details)


def bad_request(message: str) -> KubernetesError:
    return api_error(400, "BadRequest", message)


def unknown_resource(path: str) -> KubernetesError:
    return api_error(404, "NotFound", "the server could not find the requested resource", path=path)


# Custom resources: a CRD declares one resource type per served version.


def resource_types_of_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    return [
        ResourceType(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=frozenset(name for name in (version.get("subresources") or {}) if name == "status"),
            printer_columns=_printer_columns_of(version),
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
        )
        for version in spec.get("versions") or ()
        if version.get("served", True)
    ]


def _printer_columns_of(version: Mapping[str, Any]) -> tuple[PrinterColumn, ...]:
    declared = version.get("additionalPrinterColumns") or ()
    columns = tuple(
        PrinterColumn(
            name=column["name"],
            type=column.get("type", "string"),
            json_path=column["jsonPath"],
            format=column.get("format", ""),
            description=column.get("description", ""),
            priority=column.get("priority", 0),
        )
        for column in declared
    )
    return columns or (AGE_COLUMN,)  # the API server's default for a CRD without columns


def crd_problem(crd: Mapping[str, Any]) -> str | None:
    """What makes a CRD unacceptable, checked as far as serving it depends on it."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    if not group or not plural or not kind:
        return "spec.group, spec.names.plural and spec.names.kind are required"
    if crd.get("metadata", {}).get("name") != f"{plural}.{group}":
        return f'metadata.name: Invalid value: must be spec.names.plural+"."+spec.group ({plural}.{group})'
    if not spec.get("versions"):
        return "spec.versions: Required value"
    if sum(1 for version in spec["versions"] if version.get("storage")) != 1:
        return "spec.versions: Invalid value: must have exactly one version marked as storage version"
    return None


def crd_status(crd: Mapping[str, Any], accepted_at: str) -> dict[str, Any]:
    """The status the API server's CRD controllers would settle on for an acceptable CRD."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    storage = [version["name"] for version in spec["versions"] if version.get("storage")]
    condition = {"status": "True", "lastTransitionTime": accepted_at}
    return {
        "acceptedNames": names,
        "conditions": [
            {**condition, "type": "NamesAccepted", "reason": "NoConflicts", "message": "no conflicts found"},
            {
                **condition,
                "type": "Established",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": sorted(set(storage) | set(crd.get("status", {}).get("storedVersions") or ())),
    }


# Discovery documents, as `kubectl` and kopf read them.


def api_versions_document(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_versions(types: Iterable[ResourceType]) -> dict[str, list[str]]:
    versions: dict[str, list[str]] = {}
    for resource in types:
        if resource.group and resource.version not in versions.setdefault(resource.group, []):
            versions[resource.group].append(resource.version)
    return versions


def _group_document(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list_document(types: Iterable[ResourceType]) -> dict[str, Any]:
    groups = [_group_document(group, versions) for group, versions in _group_versions(types).items()]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group_document(group: str, types: Iterable[ResourceType]) -> dict[str, Any] | None:
    versions = _group_versions(types).get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(group, versions)}


def api_resource_list_document(group: str, version: str, types: Iterable[ResourceType]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for resource in types:
        if resource.group_version != (group, version):
            continue
        entries.append(
            {
                "name": resource.plural,
                "singularName": singular_of(resource),
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": list(MAIN_VERBS),
                "shortNames": list(resource.short_names),
                "categories": list(resource.categories),
            }
        )
        for subresource in sorted(resource.subresources):
            entries.append(
                {
                    "name": f"{resource.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": resource.kind,
                    "verbs": list(SUBRESOURCE_VERBS[subresource]),
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }


# OpenAPI v3, as far as kubectl reads it: the `fieldValidation` parameter of PATCH tells it that the
# server validates fields itself (so `kubectl apply` needs no `--validate=false`), and each custom
# resource's schema, under `components.schemas` with its group, version and kind, is what
# `kubectl explain` prints. Built-in kinds have no schema here.


def _group_version_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_index_document(types: Iterable[ResourceType]) -> dict[str, Any]:
    group_versions = {resource.group_version for resource in types}
    paths = {
        _group_version_path(*group_version): {
            "serverRelativeURL": f"/openapi/v3/{_group_version_path(*group_version)}"
        }
        for group_version in sorted(group_versions)
    }
    return {"paths": paths}


OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# The fields of ObjectMeta a user writes or reads most, for `kubectl explain <kind>.metadata`.
_OBJECT_META_SCHEMA: dict[str, Any] = {
    "description": "Metadata of a persisted object: its name, namespace, labels and bookkeeping.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Unique name within the namespace."},
        "generateName": {"type": "string", "description": "Prefix of a name the server generates."},
        "namespace": {"type": "string", "description": "The namespace the object lives in."},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string", "default": ""},
            "description": "Key-value pairs that label selectors match.",
        },
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string", "default": ""},
            "description": "Key-value pairs that tools and controllers keep; not selectable.",
        },
        "uid": {"type": "string", "description": "Unique identity of the object, set by the server."},
        "resourceVersion": {
            "type": "string",
            "description": "Version of the object, for changes and watches.",
        },
        "generation": {"type": "integer", "format": "int64", "description": "Counts changes of the spec."},
        "creationTimestamp": {"type": "string", "format": "date-time", "description": "When it was created."},
        "deletionTimestamp": {"type": "string", "format": "date-time", "description": "When deletion began."},
        "finalizers": {
            "type": "array",
            "items": {"type": "string", "default": ""},
            "description": "What must be done before the object is deleted.",
        },
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object"},
            "description": "Objects this one depends on; it is garbage-collected with them.",
        },
    },
}


def openapi_schema_name(group: str, version: str, kind: str) -> str:
    """The name kube-apiserver gives a kind's schema, the group reversed: io.autoscene.v1alpha1.Action."""
    return (
        ".".join([*reversed(group.split(".")), version, kind])
        if group
        else f"io.k8s.api.core.{version}.{kind}"
    )


def _openapi_schema(resource: ResourceType) -> dict[str, Any]:
    """A CRD's schema as kube-apiserver publishes it: metadata is a reference to ObjectMeta."""
    schema = dict(resource.schema or {})
    properties = dict(schema.get("properties") or {})
    properties["metadata"] = {
        "description": "Standard object's metadata.",
        "allOf": [{"$ref": f"#/components/schemas/{OBJECT_META}"}],
    }
    schema["properties"] = properties
    gvk = {"group": resource.group, "kind": resource.kind, "version": resource.version}
    schema["x-kubernetes-group-version-kind"] = [gvk]
    return schema


def openapi_group_version_document(group: str, version: str, types: Iterable[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for resource in types:
        if resource.group_version != (group, version):
            continue
        scope = "namespaces/{namespace}/" if resource.namespaced else ""
        patch = {
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": resource.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"/{_group_version_path(group, version)}/{scope}{resource.plural}/{{name}}"] = {"patch": patch}
        if resource.schema:
            schemas[openapi_schema_name(group, version, resource.kind)] = _openapi_schema(resource)
    if schemas:
        schemas[OBJECT_META] = _OBJECT_META_SCHEMA
    info = {"title": "Kubernetes", "version": KUBERNETES_RELEASE}
    return {"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": schemas}}
