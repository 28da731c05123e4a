"""Access to the Kubernetes API through the official client: one configured client, small verbs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from . import GROUP, VERSION

_api_client: client.ApiClient | None = None
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# What the API server answers when it is briefly unable to serve (kube-apiserver's priority and fairness
# sends 429 with Retry-After; 5xx while it or etcd restarts): tried again with backoff, as client-go does.
# Every verb is retried: a create that did land answers 409 the second time, which the callers take as
# "already there"; a compare-and-swap status write answers 409/422 and is recomputed (`update_status`).
RETRIES = urllib3.Retry(
    total=6,
    backoff_factor=0.25,
    backoff_max=4,
    status_forcelist=(429, 500, 502, 503, 504),
    allowed_methods=None,
    respect_retry_after_header=True,
    raise_on_status=False,
)


# Threads of the operator that call the API at once: its handlers' `asyncio.to_thread` pool
# (`handlers.threads_for_api_calls`), plus kopf's executor and the reconciler's thread.
API_THREADS = 32
CALLERS = API_THREADS + 8


def configure(kubeconfig: str | None = None) -> client.ApiClient:
    """Use the in-cluster service account when there is one, else the kubeconfig (or `$KUBECONFIG`)."""
    global _api_client
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        config.load_kube_config(config_file=path, client_configuration=configuration)
    configuration.retries = RETRIES
    # One connection per thread that may call at once (`CALLERS`); the client's default, 5 per CPU,
    # makes the others open a connection per call and drop it.
    configuration.connection_pool_maxsize = CALLERS
    _api_client = client.ApiClient(configuration)
    return _api_client


def api_client() -> client.ApiClient:
    return _api_client if _api_client is not None else configure()


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def batch() -> client.BatchV1Api:
    return client.BatchV1Api(api_client())


def get_raw(path: str, **query: Any) -> Any:
    """GET an API path (e.g. `/api/v1/namespaces/NS/pods`) as the raw HTTP response, to read as JSON or
    stream (a log). For the CLI: the typed CoreV1Api and its models take about a second to load, more
    than a whole command may. ApiException for an answer other than 2xx."""
    return request_raw("GET", path, query=query)


def request_raw(
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    query: Mapping[str, Any] | None = None,
    api: client.ApiClient | None = None,
) -> Any:
    """Send a request to an API path with a JSON-shaped `body`; the raw HTTP response, unread.
    ApiException for an answer other than 2xx.

    The typed methods validate their arguments and build and walk the client's models of the body
    (pydantic): for a controller's frequent small writes, that is most of a call's cost."""
    client_ = api or api_client()
    headers = {"Accept": "application/json, */*"}
    if body is not None:
        headers["Content-Type"] = content_type
    method, url, headers, _, post_params = client_.param_serialize(
        method,
        path,
        query_params=[(key, value) for key, value in (query or {}).items() if value is not None],
        header_params=headers,
        auth_settings=["BearerToken"],
    )
    # The body goes to the REST layer as it is, which encodes a JSON content type's body itself.
    return succeeded(client_.call_api(method, url, headers, body, post_params).response)


def succeeded(response: Any) -> Any:
    """The raw response when its status is 2xx; else ApiException with the answer's body."""
    if not 200 <= response.status < 300:
        raise ApiException(status=response.status, reason=response.reason, body=response.data.decode())
    return response


def custom_path(plural: str, namespace: str, name: str = "", subresource: str = "") -> str:
    """The API path of autoscene's custom objects of `plural` in a namespace, or of one, or of its
    subresource."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
    return "/".join(part for part in (path, name, subresource) if part)


def json_of(response: Any) -> dict[str, Any]:
    """The JSON object of a raw response, read whole; the connection goes back to the pool."""
    try:
        return dict(json.loads(response.data))
    finally:
        response.release_conn()


def unread(response: Any) -> None:
    """Let go of a raw response (a call made with `_preload_content=False`) without decoding it: a
    writer that does not need the server's answer skips building the client's typed model of it, the
    bulk of a write's cost on the client's side."""
    response.drain_conn()
    response.release_conn()


def get_custom(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The custom object, or None when it does not exist."""
    try:
        return json_of(request_raw("GET", custom_path(plural, namespace, name)))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def list_custom(plural: str, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
    listing = custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, label_selector=label_selector
    )
    return list(listing.get("items") or [])


def pages_of_custom(
    plural: str, namespace: str | None, page_size: int = 500
) -> Iterator[list[dict[str, Any]]]:
    """The objects of `plural` in `namespace` (None: all namespaces), `page_size` at a time (the list
    API's limit/continue), so that no caller holds 100,000 objects at once. ApiException as raised."""
    token = None
    while True:
        if namespace is None:
            page = custom().list_cluster_custom_object(
                GROUP, VERSION, plural, limit=page_size, _continue=token
            )
        else:
            page = custom().list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, limit=page_size, _continue=token
            )
        yield list(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def create_custom(plural: str, body: Mapping[str, Any]) -> bool:
    """Create the object; False when one of that name already exists (creation is idempotent)."""
    return create_once(custom_path(plural, body["metadata"]["namespace"]), body)


def patch_custom_status(plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    path = custom_path(plural, namespace, name, "status")
    return json_of(request_raw("PATCH", path, {"status": dict(status)}, content_type=MERGE_PATCH))


def create_once(path: str, body: Mapping[str, Any]) -> bool:
    """POST `body` to the collection at `path`; False when an object of that name exists already (a
    409 AlreadyExists: someone, maybe we earlier, created it), not an error."""
    try:
        unread(request_raw("POST", path, body))
    except ApiException as error:
        if error.status == 409:
            return False
        raise
    return True


def sanitized(model: Any) -> dict[str, Any]:
    """A client model object as the plain JSON-shaped dict the API server sent."""
    return dict(api_client().sanitize_for_serialization(model))


def update_status(
    plural: str,
    namespace: str,
    name: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    retries: int = 20,
    known: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Rewrite an object's status from its current value, safe against concurrent writers.

    `change(current object)` gives the new status, or None when no write is needed. A JSON patch whose
    first operation tests `metadata.resourceVersion` is a compare-and-swap: when someone else wrote in
    between, the server refuses it (409 or 422) and we read and try again. A 422 while the object did
    not change is the status itself being invalid: `InvalidStatusError`, at once. The object as
    written; None when it does not exist or needed no write. `known`: the object as the caller last
    saw it (with its resourceVersion), tried first instead of reading it; a stale one costs one retry.
    """
    refused: ApiException | None = None
    version = None
    for attempt in range(retries):
        current = dict(known) if known is not None and attempt == 0 else get_custom(plural, namespace, name)
        if current is None:
            return None
        if refused is not None and current["metadata"]["resourceVersion"] == version:
            raise InvalidStatusError(
                f'{plural} "{name}": the server refused its new status: {message_of(refused)}'
            )
        version = current["metadata"]["resourceVersion"]
        status = change(current)
        if status is None:
            return None
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/status", "value": status},
        ]
        try:
            path = custom_path(plural, namespace, name, "status")
            return json_of(request_raw("PATCH", path, patch, content_type=JSON_PATCH))
        except ApiException as error:
            if error.status not in (409, 422):
                raise
            refused = error if error.status == 422 else None
    raise StatusConflictError(f'{plural} "{name}" kept changing while its status was being updated')


class StatusConflictError(RuntimeError):
    """A status update lost the race too many times in a row."""


class InvalidStatusError(RuntimeError):
    """The API server refuses the status itself (its schema), not a race."""


def message_of(error: ApiException) -> str:
    """The message of the Status the API server answered with, else the HTTP reason."""
    try:
        return str(json.loads(error.body).get("message") or error.reason)
    except (TypeError, ValueError):
        return str(error.reason)


def delete_custom(plural: str, namespace: str, name: str) -> bool:
    """Delete the object and, in the background, what it owns; False when it was already gone."""
    try:
        custom().delete_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, propagation_policy="Background"
        )
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
