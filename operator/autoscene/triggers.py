"""Trigger bookkeeping: how often each one fired, kept in its status."""

from typing import Any

from . import kube, timestamps


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
