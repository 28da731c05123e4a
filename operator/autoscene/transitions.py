"""What a written Invocation status sets off: Events, metrics, the next queued run, retention.

`invocations.write`, the one writer of an Invocation's status, calls `carry_out` after every write;
which effects follow which move is decided by `lifecycle.effects`, not by the callers.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import events, labels, lifecycle, metrics, timestamps, triggers
from .lifecycle import Effect

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transition:
    """A status written to an Invocation: the status it replaced, and the fields that changed."""

    invocation: dict[str, Any]
    previous: dict[str, Any]
    update: dict[str, Any]


StartNext = Callable[[str, str, str], object]  # (namespace, action, finished run) → starts the next


def carry_out(transition: Transition, start_next: StartNext) -> None:
    """Carry out the effects of a written move; a failed effect is logged, never raised (the status is
    written, and the reconciliation pass repairs what an effect left undone)."""
    update, previous, invocation = transition.update, transition.previous, transition.invocation
    meta, spec = invocation["metadata"], invocation["spec"]
    final = invocation.get("status") or {}
    due = lifecycle.effects(previous, update)
    for effect in (effect for effect in Effect if effect in due):  # in the order Effect lists them
        try:
            if effect is Effect.EVENT:
                phase = update.get("phase", previous.get("phase"))
                reason = update.get("reason") or phase or ""
                warning = phase == lifecycle.FAILED
                events.post(invocation, reason, update.get("message", ""), warning=warning)
            elif effect is Effect.COUNT_DISPATCH:
                _count_dispatch(invocation)
            elif effect is Effect.RELEASE_SLOT:
                start_next(meta["namespace"], spec["action"], meta["name"])
            elif effect is Effect.COUNT_FINISHED:
                metrics.invocations_finished.labels(spec["action"], final["phase"]).inc()
                if final.get("startTime") and final.get("completionTime"):
                    elapsed = timestamps.parse(final["completionTime"]) - timestamps.parse(final["startTime"])
                    metrics.run_duration.labels(spec["action"]).observe(elapsed.total_seconds())
            elif effect is Effect.APPLY_RETENTION and spec.get("trigger"):
                triggers.apply_retention(meta["namespace"], spec["trigger"])
        except Exception as error:  # the reconciliation pass retries starts and retention
            logger.warning("%s after %s failed: %s", effect.value, meta["name"], error)


def _count_dispatch(invocation: dict[str, Any]) -> None:
    metrics.invocations_created.labels(invocation["spec"]["action"]).inc()
    added = (invocation["metadata"].get("annotations") or {}).get(labels.FILE_ADDED_AT)
    if added:
        waited = (timestamps.now() - timestamps.parse(added)).total_seconds()
        metrics.dispatch_latency.observe(max(waited, 0.0))
