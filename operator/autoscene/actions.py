"""Actions: whether one can run (its Ready condition), read from its spec alone."""

from collections.abc import Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from . import API_VERSION, conditions, imagerefs, jobs, kube, timestamps

READY = "Ready"
# A run of no particular file, to build the Job an Action's runs would get.
_PROBE = {
    "apiVersion": API_VERSION,
    "kind": "Invocation",
    "metadata": {"name": "probe", "namespace": "probe", "uid": "probe"},
    "spec": {"action": "probe", "record": "probe", "file": "probe.mp4"},
}


def readiness_of(action: Mapping[str, Any]) -> conditions.Readiness:
    """True (reason Valid) when a Job can be built from the Action and the API server would accept it;
    False with why: InvalidSpec (no Job can be built), InvalidImageName (an image reference a kubelet
    cannot parse: `imagerefs`), InvalidQuantity (a resource quantity that does
    not parse), RequestAboveLimit (a request above its limit, which the API server refuses in a Pod:
    Kubernetes docs, "Resource Management for Pods and Containers")."""
    spec = action.get("spec") or {}
    try:
        jobs.build_job(_PROBE, action, "probe")
    except (KeyError, TypeError, ValueError) as error:
        return conditions.FALSE, "InvalidSpec", f"no Job can be built from this Action: {error}"
    problem = imagerefs.reference_problem(str(spec.get("image")))
    if problem is not None:
        return (
            conditions.FALSE,
            "InvalidImageName",
            f'image "{spec.get("image")}" is no image reference ({problem}): a node would not start its runs',
        )
    resources = spec.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for name, limit in limits.items():
        try:
            above = name in requests and parse_quantity(requests[name]) > parse_quantity(limit)
        except ValueError as error:
            return conditions.FALSE, "InvalidQuantity", f"resources of {name}: {error}"
        if above:
            return (
                conditions.FALSE,
                "RequestAboveLimit",
                f"resources.requests.{name} ({requests[name]}) is above resources.limits.{name} ({limit}): "
                "the API server refuses such Pods",
            )
    return conditions.TRUE, "Valid", f'runs image "{spec.get("image")}"'


def refresh_readiness(action: Mapping[str, Any]) -> None:
    """Write the Action's Ready condition when it changed."""
    meta = action["metadata"]
    written = conditions.updated(action, READY, readiness_of(action), timestamps.render(timestamps.now()))
    if written is not None:
        kube.patch_custom_status("actions", meta["namespace"], meta["name"], {"conditions": written})
