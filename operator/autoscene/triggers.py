"""Trigger bookkeeping: its run history in its status, and the retention policy that prunes it."""

from collections.abc import Iterable
from typing import Any

from . import kube, labels, retention, timestamps


def history_status(runs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The Trigger status fields that sum up its Invocations, given as (creationTimestamp, name) pairs:
    how many exist (`fired`), and the newest one and when it was made. Derived from the Invocations
    themselves, so retention's pruning lowers `fired` and no crash can leave it wrong."""
    found = list(runs)
    if not found:
        return {"fired": 0, "lastFiredAt": None, "lastInvocation": None}
    created, name = max(found)  # RFC 3339 in UTC sorts as text
    return {"fired": len(found), "lastFiredAt": created, "lastInvocation": name}


def apply_retention(namespace: str, trigger: str) -> list[str]:
    """Delete the Trigger's finished Invocations beyond its retention policy; the names deleted."""
    body = kube.get_custom("triggers", namespace, trigger)
    policy = ((body or {}).get("spec") or {}).get("retention")
    if not policy:
        return []
    selector = f"{labels.TRIGGER}={trigger}" if labels.is_label_value(trigger) else ""
    history = [
        invocation
        for invocation in kube.list_custom("invocations", namespace, label_selector=selector)
        if invocation["spec"].get("trigger") == trigger
    ]
    pruned = retention.invocations_to_prune(history, policy, timestamps.now())
    for name in pruned:
        kube.delete_custom("invocations", namespace, name)
    return pruned
