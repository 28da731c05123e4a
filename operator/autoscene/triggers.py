"""Trigger bookkeeping: how often each one fired, kept in its status."""

from typing import Any

from . import kube, labels, retention, timestamps


def count_firing(namespace: str, trigger: str, invocation: str) -> None:
    """Add one to the Trigger's `status.fired` and remember its latest Invocation."""

    def fired_once_more(current: dict[str, Any]) -> dict[str, Any]:
        return {
            **current,
            "fired": int(current.get("fired", 0)) + 1,
            "lastFiredAt": timestamps.render(timestamps.now()),
            "lastInvocation": invocation,
        }

    kube.update_status("triggers", namespace, trigger, fired_once_more)


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
