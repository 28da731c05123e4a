"""
Objects of the embedded API server, with the API server's rules for writes, deletion and watching.

All methods are synchronous and are called from one event loop, so every write is atomic with
respect to lists and watches: no locks are needed, and a watch that subscribes right after a list
misses nothing. Stored objects are never mutated in place (each write stores a new dict), so they
can be handed to responses and watch streams without copying.
"""

import asyncio
import base64
import bisect
import itertools
import json
import random
import re
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kmock import KubernetesError

from ..schemas import FieldError
from . import jsoncodec
from .apiserver_defaults import default_job
from .apiserver_patches import clone
from .apiserver_resources import (
    BUILTIN_RESOURCES,
    CRD_GROUP_RESOURCE,
    EVENTS,
    NAMESPACES,
    PODS,
    SECRETS,
    GroupResource,
    ResourceKey,
    ResourceType,
    already_exists,
    api_error,
    bad_request,
    conflict,
    crd_problem,
    crd_status,
    invalid,
    not_found,
    resource_types_of_crd,
)
from .apiserver_schema import normalize_by_schema, pruned_metadata, schema_errors
from .apiserver_selectors import Selection

Object = dict[str, Any]
ObjectKey = tuple[str | None, str]  # (namespace, name); the namespace is None for cluster-scoped objects
ObjectRef = tuple[GroupResource, ObjectKey]
Delivery = tuple[str, Object] | None  # a watch event (type, object) for one subscriber; None ends the stream

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# What kube-apiserver says of a name that is not one (k8s.io/apimachinery/pkg/util/validation).
_NOT_A_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_NOT_A_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's: no vowels, no look-alikes
_INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")
MAX_OBJECT_BYTES = 1572864
# How long after a write naming only absent owners the garbage collector deletes the object; the real
# one verifies the owners with a request of its own, typically within a second.
DANGLING_OWNERS_CHECK_SECONDS = 0.5
_SERVER_OWNED_METADATA = (
    "name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
    "resourceVersion",
)  # fmt: skip
_OMITTED_WHEN_EMPTY = (
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "generateName",
    "managedFields",
)
JOBS: GroupResource = ("batch", "jobs")
_INITIAL_STATUS: dict[GroupResource, dict[str, Any]] = {
    NAMESPACES: {"phase": "Active"},
    PODS: {"phase": "Pending"},
    ("", "persistentvolumeclaims"): {"phase": "Pending"},
    JOBS: {},
}


def now_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metadata_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def owner_uids_of(obj: Mapping[str, Any] | None) -> set[str]:
    if obj is None:
        return set()
    return {ref["uid"] for ref in metadata_of(obj).get("ownerReferences") or () if ref.get("uid")}


def _as_version(obj: Object, resource: ResourceType) -> Object:
    """Objects are shared by the served versions of a resource; only `apiVersion` tells them apart."""
    return (
        obj if obj.get("apiVersion") == resource.api_version else {**obj, "apiVersion": resource.api_version}
    )


def _all_but_metadata_and_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _all_but_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key != "metadata"}


@dataclass(eq=False)
class WatchEvent:
    revision: int
    group_resource: GroupResource
    type: str
    object: Object
    previous: Object | None = None  # the state before a MODIFIED event


@dataclass(eq=False)
class Subscription:
    """One watch stream: the events of one resource that match its selection, in revision order."""

    resource: ResourceType
    selection: Selection
    queue: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)

    def offer(self, event: WatchEvent) -> None:
        """Deliver an event as this watcher sees it: leaving its selection is DELETED, entering it ADDED."""
        matches_now = self.selection.matches(event.object)
        matched_before = event.previous is not None and self.selection.matches(event.previous)
        if event.type != "MODIFIED" or (matches_now and matched_before):
            kind = event.type if matches_now else None
        else:
            kind = "ADDED" if matches_now else "DELETED" if matched_before else None
        if kind is not None:
            self.queue.put_nowait((kind, _as_version(event.object, self.resource)))

    def close(self) -> None:
        self.queue.put_nowait(None)


class ObjectStore:
    def __init__(self, *, history_limit: int = 20_000, kept_events: int = 5_000) -> None:
        self._types: dict[ResourceKey, ResourceType] = {}
        self._types_of_crd: dict[str, list[ResourceKey]] = {}
        self._objects: dict[GroupResource, dict[ObjectKey, Object]] = {}
        # Each resource's keys in list order ((namespace or "", name)), kept as objects come and go.
        self._ordered: dict[GroupResource, list[tuple[str, str]]] = {}
        self._refs_by_uid: dict[str, ObjectRef] = {}
        self._dependents: dict[str, set[ObjectRef]] = {}  # owner uid → objects naming it in ownerReferences
        self._population: Counter[str] = Counter()  # objects per namespace, to finish terminating namespaces
        self._orphaning: set[str] = set()  # uids deleted with propagationPolicy=Orphan, until removed
        self._revision = 0
        self._history: deque[WatchEvent] = deque()
        self._history_limit = history_limit
        self._forgotten_revision = 0  # watches from before this revision cannot be replayed: 410 Gone
        self._kept_events = kept_events
        self._subscriptions: dict[GroupResource, set[Subscription]] = {}
        self.removal_listeners: list[Callable[[GroupResource, Object], None]] = []
        for resource in BUILTIN_RESOURCES:
            self._serve(resource)
        for namespace in _INITIAL_NAMESPACES:
            self.create(self._types[("", "v1", "namespaces")], None, {"metadata": {"name": namespace}})

    # Resource types.

    @property
    def revision(self) -> str:
        return str(self._revision)

    def resource_types(self) -> list[ResourceType]:
        return list(self._types.values())

    def resolve(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def _serve(self, resource: ResourceType) -> None:
        self._types[resource.key] = resource
        self._objects.setdefault(resource.group_resource, {})

    def _serve_crd(self, crd: Object) -> None:
        name = metadata_of(crd)["name"]
        types = resource_types_of_crd(crd)
        for key in set(self._types_of_crd.get(name, ())) - {resource.key for resource in types}:
            del self._types[key]
        for resource in types:
            self._serve(resource)
        self._types_of_crd[name] = [resource.key for resource in types]

    def _stop_serving_crd(self, crd: Object) -> None:
        spec = crd.get("spec") or {}
        group_resource = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        for object_key in list(self._objects.get(group_resource, {})):
            self._remove(group_resource, object_key, self._objects[group_resource][object_key])
        for subscription in self._subscriptions.pop(group_resource, set()):
            subscription.close()
        for resource_key in self._types_of_crd.pop(metadata_of(crd)["name"], []):
            self._types.pop(resource_key, None)
        self._objects.pop(group_resource, None)
        self._ordered.pop(group_resource, None)

    # Reading.

    def find(self, group_resource: GroupResource, namespace: str | None, name: str) -> Object | None:
        return self._objects.get(group_resource, {}).get((namespace, name))

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> Object:
        obj = self.find(resource.group_resource, namespace if resource.namespaced else None, name)
        if obj is None:
            raise not_found(resource, name)
        return _as_version(obj, resource)

    def _candidates(self, resource: ResourceType, selection: Selection) -> Iterable[Object]:
        objects = self._objects.get(resource.group_resource, {})
        name = selection.fields.required_value("metadata.name")
        if name is not None and (selection.namespace is not None or not resource.namespaced):
            found = objects.get((selection.namespace, name))
            return [found] if found is not None else []
        return objects.values()

    def select(self, resource: ResourceType, selection: Selection) -> list[Object]:
        return self.select_page(resource, selection)[0]

    def select_page(
        self,
        resource: ResourceType,
        selection: Selection,
        after: tuple[str, str] | None = None,
        limit: int = 0,
    ) -> tuple[list[Object], int]:
        """The matching objects in (namespace, name) order, those after `after` only, `limit` at most
        (0: all), with how many more match after them (the list API's limit and continue). Only the
        page is copied out: each page of a paged list of 100,000 objects costs a page, as in etcd."""
        group_resource = resource.group_resource
        if selection.fields.required_value("metadata.name") is not None:
            chosen = sorted(_sort_key(key) for key, _ in self._keyed(resource, selection))
        else:
            chosen = self._ordered.get(group_resource, [])
        objects = self._objects.get(group_resource, {})
        start = bisect.bisect_right(chosen, after) if after is not None else 0
        page: list[Object] = []
        remaining = 0
        for namespace, name in itertools.islice(chosen, start, None):
            obj = objects.get((namespace or None, name))
            if obj is None or not selection.matches(obj):
                continue
            if limit and len(page) >= limit:
                remaining += 1
            else:
                page.append(obj)
        return [_as_version(obj, resource) for obj in page], remaining

    def _keyed(self, resource: ResourceType, selection: Selection) -> Iterable[tuple[ObjectKey, Object]]:
        for obj in self._candidates(resource, selection):
            yield (metadata_of(obj).get("namespace"), metadata_of(obj)["name"]), obj

    # Creating.

    def create(
        self, resource: ResourceType, namespace: str | None, body: Any, *, dry_run: bool = False
    ) -> Object:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise bad_request("the body of the request must be an object with a `metadata` object")
        obj = clone(body)
        metadata = obj.setdefault("metadata", {})
        namespace = self._creation_namespace(resource, namespace, metadata)
        name = metadata.get("name") or self._generated_name(resource, namespace, metadata.get("generateName"))
        self._check_name(resource, name)
        if self.find(resource.group_resource, namespace, name) is not None:
            raise already_exists(resource, name)
        obj = self._admitted(resource, obj, previous=None)
        metadata = obj["metadata"]
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            metadata.pop(transient, None)
        metadata.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now_timestamp(), generation=1)
        if namespace is not None:
            metadata["namespace"] = namespace
        if resource.group_resource == JOBS:
            default_job(obj)
        if dry_run:
            return obj
        self._commit(resource.group_resource, (namespace, name), obj, "ADDED", previous=None)
        if resource.group_resource == EVENTS:
            self._forget_oldest_events()
        return obj

    def _creation_namespace(
        self, resource: ResourceType, namespace: str | None, metadata: dict[str, Any]
    ) -> str | None:
        if not resource.namespaced:
            metadata.pop("namespace", None)
            return None
        if namespace is None:
            raise api_error(405, "MethodNotAllowed", f"{resource.plural} must be created in a namespace")
        if metadata.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        owner = self.find(NAMESPACES, None, namespace)
        if owner is None:
            raise not_found(NAMESPACES, namespace)
        if metadata_of(owner).get("deletionTimestamp"):
            raise api_error(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                name=namespace,
                kind="namespaces",
            )
        return namespace

    def _generated_name(self, resource: ResourceType, namespace: str | None, prefix: Any) -> str:
        if not prefix:
            raise invalid(resource, "", "metadata.name: Required value: name or generateName is required")
        for _ in range(10):
            name = str(prefix) + "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))
            if self.find(resource.group_resource, namespace, name) is None:
                return name
        raise already_exists(resource, str(prefix))

    def _check_name(self, resource: ResourceType, name: Any) -> None:
        """A namespace's name is a DNS label, any other a DNS subdomain; one cause per rule broken."""
        is_label = resource.group_resource == NAMESPACES
        pattern, limit, rule = (_LABEL, 63, _NOT_A_LABEL) if is_label else (_SUBDOMAIN, 253, _NOT_A_SUBDOMAIN)
        text = str(name)
        # The length in bytes, as Go's len counts it.
        broken = [f"must be no more than {limit} characters"] if len(text.encode()) > limit else []
        if not isinstance(name, str) or not pattern.match(name):
            broken.append(rule)
        if broken:
            value = json.dumps(text, ensure_ascii=False)  # Go's %q keeps printable characters
            errors = [
                FieldError("metadata.name", "FieldValueInvalid", f"Invalid value: {value}: {why}")
                for why in broken
            ]
            raise _invalid(resource, text, errors)

    def _admitted(self, resource: ResourceType, obj: Object, previous: Object | None) -> Object:
        """What the API server's defaulting and per-resource strategies make of a written object."""
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        metadata = obj["metadata"] = pruned_metadata(obj["metadata"])
        for optional in _OMITTED_WHEN_EMPTY:  # as ObjectMeta's `omitempty` fields serialize
            if optional in metadata and not metadata[optional]:
                del metadata[optional]
        if resource.schema is not None:
            obj = normalize_by_schema(obj, resource.schema)
            if errors := schema_errors(obj, resource.schema, previous):
                raise _invalid(resource, str(metadata_of(obj).get("name")), errors)
        if previous is None and resource.has_status:
            obj.pop("status", None)  # created objects start with the status their controllers would set
            if resource.group_resource in _INITIAL_STATUS:
                obj["status"] = clone(_INITIAL_STATUS[resource.group_resource])
        if resource.group_resource == SECRETS and isinstance(obj.get("stringData"), dict):
            encoded = {
                key: base64.b64encode(str(value).encode()).decode()
                for key, value in obj.pop("stringData").items()
            }
            obj["data"] = {**(obj.get("data") or {}), **encoded}
        if resource.group_resource == CRD_GROUP_RESOURCE:
            if problem := crd_problem(obj):
                raise invalid(resource, str(metadata_of(obj).get("name")), problem)
            conditions = ((previous or {}).get("status") or {}).get("conditions") or [{}]
            obj["status"] = crd_status(obj, conditions[0].get("lastTransitionTime") or now_timestamp())
        return obj

    # Updating.

    def update(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[Object], Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Object:
        """Apply `change` to a copy of the object, then keep what this endpoint may change and store it."""
        namespace = namespace if resource.namespaced else None
        key = (namespace, name)
        current = self.find(resource.group_resource, *key)
        if current is None:
            raise not_found(resource, name)
        candidate = change(clone(_as_version(current, resource)))
        if not isinstance(candidate, dict) or not isinstance(candidate.get("metadata", {}), dict):
            raise bad_request("the object must be a JSON object with a `metadata` object")
        new = self._updated(resource, current, candidate, subresource)
        if new == current:
            return _as_version(current, resource)  # a no-op write changes no revision and emits no event
        current_metadata, new_metadata = metadata_of(current), new["metadata"]
        if current_metadata.get("deletionTimestamp") and not new_metadata.get("finalizers"):
            return new if dry_run else _as_version(self._remove(resource.group_resource, key, new), resource)
        if dry_run:
            return new
        self._commit(resource.group_resource, key, new, "MODIFIED", previous=current)
        return _as_version(new, resource)

    def _updated(
        self, resource: ResourceType, current: Object, candidate: Object, subresource: str | None
    ) -> Object:
        metadata, current_metadata = candidate.get("metadata") or {}, metadata_of(current)
        name = current_metadata["name"]
        if metadata.get("resourceVersion") not in (None, "", current_metadata["resourceVersion"]):
            why = (
                "the object has been modified; please apply your changes to the latest version and try again"
            )
            raise conflict(resource, name, why)
        if metadata.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({metadata.get('name')}) does not match the name on the URL ({name})"
            )
        if subresource == "status":
            # Stored objects are never changed in place (a new version is a new object): only the
            # parts written below, the top level and the metadata, are copied, not the whole object.
            new = {**current, "metadata": dict(current_metadata)}
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            new = candidate
            if resource.has_status and "status" in current:
                new["status"] = current["status"]
            elif resource.has_status:
                new.pop("status", None)
            new["metadata"] = self._updated_metadata(resource, current_metadata, metadata)
        new = self._admitted(resource, new, previous=current)
        # The generation counts changes of the desired state: not metadata, nor a status with an endpoint.
        desired_state = _all_but_metadata_and_status if resource.has_status else _all_but_metadata
        changed_spec = desired_state(new) != desired_state(current)
        new["metadata"]["generation"] = current_metadata.get("generation", 1) + (1 if changed_spec else 0)
        return new

    def _updated_metadata(
        self, resource: ResourceType, current: Mapping[str, Any], written: Mapping[str, Any]
    ) -> dict[str, Any]:
        metadata = dict(written)
        for immutable in _SERVER_OWNED_METADATA:
            if immutable in current:
                metadata[immutable] = current[immutable]
            else:
                metadata.pop(immutable, None)
        if current.get("deletionTimestamp"):
            added = set(metadata.get("finalizers") or ()) - set(current.get("finalizers") or ())
            if added:
                why = (
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
                    f"deleted, found new finalizers {sorted(added)}"
                )
                raise invalid(resource, current["name"], why)
        return metadata

    # Deleting.

    def delete(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Object:
        key = (namespace if resource.namespaced else None, name)
        current = self.find(resource.group_resource, *key)
        if current is None:
            raise not_found(resource, name)
        if resource.group_resource == NAMESPACES and name in _INITIAL_NAMESPACES:
            raise api_error(
                403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted'
            )
        metadata = metadata_of(current)
        for field_name in ("uid", "resourceVersion"):
            expected = (preconditions or {}).get(field_name)
            if expected and expected != metadata.get(field_name):
                actual = metadata.get(field_name)
                why = (
                    f"Precondition failed: {field_name} in precondition: {expected}, in object meta: {actual}"
                )
                raise conflict(resource, name, why)
        if dry_run:
            return _as_version(current, resource)
        return _as_version(self._delete(resource.group_resource, key, propagation), resource)

    def _delete(self, group_resource: GroupResource, key: ObjectKey, propagation: str) -> Object:
        current = self._objects[group_resource][key]
        metadata = metadata_of(current)
        if propagation == "Orphan":
            self._orphaning.add(metadata["uid"])
        if metadata.get("deletionTimestamp"):
            return current
        is_namespace = group_resource == NAMESPACES
        if not metadata.get("finalizers") and not is_namespace:
            return self._remove(group_resource, key, current)
        marked = clone(current)
        marked["metadata"].update(
            deletionTimestamp=now_timestamp(),
            deletionGracePeriodSeconds=0,
            generation=metadata.get("generation", 1) + 1,
        )
        if is_namespace:
            marked["status"] = {**(marked.get("status") or {}), "phase": "Terminating"}
        self._commit(group_resource, key, marked, "MODIFIED", previous=current)
        if is_namespace:
            self._delete_namespace_content(key[1])
            self._finish_namespace(key[1])
        return self.find(group_resource, *key) or marked

    def _remove(self, group_resource: GroupResource, key: ObjectKey, last: Object) -> Object:
        self._revision += 1
        final = {**last, "metadata": {**metadata_of(last), "resourceVersion": str(self._revision)}}
        stored = self._objects[group_resource].pop(key)
        ordered = self._ordered.get(group_resource, [])
        position = bisect.bisect_left(ordered, _sort_key(key))
        if position < len(ordered) and ordered[position] == _sort_key(key):
            del ordered[position]
        uid = final["metadata"].get("uid", "")
        self._refs_by_uid.pop(uid, None)
        self._index_owners((group_resource, key), before=stored, after=None)
        if key[0] is not None:
            self._population[key[0]] -= 1
        self._record(WatchEvent(self._revision, group_resource, "DELETED", final))
        orphaned = uid in self._orphaning
        self._orphaning.discard(uid)
        self._collect_dependents(uid, orphan=orphaned)
        if group_resource == CRD_GROUP_RESOURCE:
            self._stop_serving_crd(final)
        if key[0] is not None:
            self._finish_namespace(key[0])
        for listener in self.removal_listeners:
            listener(group_resource, final)
        return final

    def _collect_dependents(self, owner_uid: str, *, orphan: bool) -> None:
        """The garbage collector: dependents lose the owner; those left with no live owner are deleted."""
        dependents = sorted(
            self._dependents.pop(owner_uid, set()), key=lambda ref: (ref[0], ref[1][0] or "", ref[1][1])
        )
        for group_resource, key in dependents:
            dependent = self.find(group_resource, *key)
            if dependent is None:
                continue
            references = metadata_of(dependent).get("ownerReferences") or []
            remaining = [reference for reference in references if reference.get("uid") != owner_uid]
            if orphan or any(reference.get("uid") in self._refs_by_uid for reference in remaining):
                released = clone(dependent)
                released["metadata"]["ownerReferences"] = remaining
                if not remaining:
                    del released["metadata"]["ownerReferences"]
                self._commit(group_resource, key, released, "MODIFIED", previous=dependent)
            else:
                self._delete(group_resource, key, "Background")

    def _delete_namespace_content(self, namespace: str) -> None:
        for group_resource, objects in list(self._objects.items()):
            for key in [key for key in objects if key[0] == namespace]:
                if key in objects:  # a cascade may have removed it meanwhile
                    self._delete(group_resource, key, "Background")

    def _finish_namespace(self, namespace: str) -> None:
        owner = self.find(NAMESPACES, None, namespace)
        if owner is None or self._population[namespace] > 0:
            return
        metadata = metadata_of(owner)
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            self._remove(NAMESPACES, (None, namespace), owner)

    def _forget_oldest_events(self) -> None:
        """Events expire in a real cluster (1 h by default); here the oldest go once there are too many."""
        events = self._objects[EVENTS]
        while len(events) > self._kept_events:
            oldest_key = next(iter(events))
            self._remove(EVENTS, oldest_key, events[oldest_key])

    # Storing and notifying.

    def _commit(
        self, group_resource: GroupResource, key: ObjectKey, obj: Object, kind: str, previous: Object | None
    ) -> None:
        if len(jsoncodec.dumps(obj)) > MAX_OBJECT_BYTES:
            # What etcd answers (its --max-request-bytes, 1.5 MiB) and kube-apiserver passes on.
            raise KubernetesError(status=500, message="etcdserver: request is too large")
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[group_resource][key] = obj
        self._index_owners((group_resource, key), before=previous, after=obj)
        if previous is None:
            bisect.insort(self._ordered.setdefault(group_resource, []), _sort_key(key))
            self._refs_by_uid[obj["metadata"]["uid"]] = (group_resource, key)
            if key[0] is not None:
                self._population[key[0]] += 1
        self._record(WatchEvent(self._revision, group_resource, kind, obj, previous))
        if group_resource == CRD_GROUP_RESOURCE:
            self._serve_crd(obj)

    def _index_owners(self, ref: ObjectRef, *, before: Object | None, after: Object | None) -> None:
        old, new = owner_uids_of(before), owner_uids_of(after)
        for uid in old - new:
            self._dependents.get(uid, set()).discard(ref)
        for uid in new - old:
            self._dependents.setdefault(uid, set()).add(ref)
        if after is not None and new - old and self._absent_owners(ref, after)[0]:
            self._collect_if_dangling_later(ref, after["metadata"]["uid"])

    def _absent_owners(self, ref: ObjectRef, obj: Object) -> tuple[list[dict[str, Any]], bool]:
        """The object's owner references verified absent, and whether another keeps it: an owner that
        exists, or one that cannot be resolved (which the collector leaves alone). The "Garbage
        Collection" doc: a namespaced owner in another namespace than its dependent's counts as absent;
        a cluster-scoped dependent cannot have a namespaced owner."""
        namespace = ref[1][0]
        absent, kept = [], False
        for reference in metadata_of(obj).get("ownerReferences") or []:
            found = self._refs_by_uid.get(reference.get("uid", ""))
            if found is None:
                namespaced = self._kind_is_namespaced(reference)
                if namespaced is None or (namespace is None and namespaced):
                    kept = True  # an unknown kind, or a namespaced owner of a cluster-scoped object
                else:
                    absent.append(reference)
            elif found[1][0] is None or found[1][0] == namespace or namespace is None:
                kept = True  # present (the last: a namespaced owner of a cluster-scoped object)
            else:
                absent.append(reference)
        return absent, kept

    def _kind_is_namespaced(self, reference: Mapping[str, Any]) -> bool | None:
        group, _, version = str(reference.get("apiVersion", "")).rpartition("/")
        for resource in self._types.values():
            if (resource.group, resource.version, resource.kind) == (group, version, reference.get("kind")):
                return resource.namespaced
        return None

    def _collect_if_dangling_later(self, ref: ObjectRef, uid: str) -> None:
        """A moment after a write naming absent owners, as the garbage collector does: the object goes
        when no owner keeps it, else it loses the absent references (on the server's loop; a store used
        on its own, without one, leaves it as it is)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(DANGLING_OWNERS_CHECK_SECONDS, self._collect_if_dangling, ref, uid)

    def _collect_if_dangling(self, ref: ObjectRef, uid: str) -> None:
        found = self.find(ref[0], *ref[1])
        if found is None or metadata_of(found).get("uid") != uid:
            return
        absent, kept = self._absent_owners(ref, found)
        if not absent:
            return
        if not kept:
            self._delete(ref[0], ref[1], "Background")
            return
        released = clone(found)
        released["metadata"]["ownerReferences"] = [
            reference for reference in metadata_of(found)["ownerReferences"] if reference not in absent
        ]
        self._commit(ref[0], ref[1], released, "MODIFIED", previous=found)

    def _record(self, event: WatchEvent) -> None:
        self._history.append(event)
        if len(self._history) > self._history_limit:
            self._forgotten_revision = self._history.popleft().revision
        for subscription in self._subscriptions.get(event.group_resource, ()):
            subscription.offer(event)

    # Watching.

    def subscribe(self, resource: ResourceType, selection: Selection, since: str | None) -> Subscription:
        """
        Start a watch. From no revision (or "0"), it begins with ADDED events for the current objects;
        from a revision, it replays the newer events first. Too old a revision is 410 Gone (Expired).
        """
        subscription = Subscription(resource, selection)
        if since in (None, "", "0"):
            for obj in self.select(resource, selection):
                subscription.queue.put_nowait(("ADDED", obj))
        else:
            for event in self._events_since(resource.group_resource, self._revision_of(since)):
                subscription.offer(event)
        self._subscriptions.setdefault(resource.group_resource, set()).add(subscription)
        return subscription

    def _revision_of(self, since: str) -> int:
        try:
            revision = int(since)
        except ValueError:
            raise bad_request(f"invalid resource version: {since!r}") from None
        if revision < self._forgotten_revision:
            raise api_error(
                410, "Expired", f"too old resource version: {revision} ({self._forgotten_revision})"
            )
        return revision

    def _events_since(self, group_resource: GroupResource, revision: int) -> Iterator[WatchEvent]:
        newer: list[WatchEvent] = []
        for event in reversed(self._history):
            if event.revision <= revision:
                break
            if event.group_resource == group_resource:
                newer.append(event)
        return reversed(newer)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.get(subscription.resource.group_resource, set()).discard(subscription)

    def close_all_subscriptions(self) -> None:
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.close()


def _sort_key(key: ObjectKey) -> tuple[str, str]:
    """Where an object stands in a list: by namespace ("" for none), then name, as etcd's keys sort."""
    return (key[0] or "", key[1])


def _invalid(resource: ResourceType, name: str, errors: list[FieldError]) -> KubernetesError:
    """422 Invalid with one cause per error; the message lists them all, in brackets when several (an
    aggregate error's wording)."""
    listed = [f"{error.field}: {error.message}" for error in errors]
    why = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
    causes = [{"reason": error.reason, "message": error.message, "field": error.field} for error in errors]
    return invalid(resource, name, why, causes)
