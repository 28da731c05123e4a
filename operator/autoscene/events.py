"""Kubernetes Events a user sees in `kubectl describe`: posted through the API from any thread."""

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from . import kube, timestamps

logger = logging.getLogger(__name__)
COMPONENT = "autoscene-operator"


def post(obj: Mapping[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """Post an Event about `obj`; a failure to post is logged, never raised (the work matters more)."""
    meta = obj["metadata"]
    now = timestamps.render(timestamps.now())
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name'][:200]}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.core().create_namespaced_event(meta["namespace"], body)
    except Exception as error:
        logger.warning("could not post the %s Event on %s: %s", reason, meta["name"], error)
