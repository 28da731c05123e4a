"""What follows a change of an Invocation's phase: an Event, metrics, the Trigger's retention policy."""

import logging

from . import events, invocations, metrics, status, timestamps, triggers

logger = logging.getLogger(__name__)


def announce(transition: invocations.Transition | None) -> None:
    if transition is None:
        return
    update, previous = transition.update, transition.previous
    if "phase" not in update and "reason" not in update:
        return
    invocation = transition.invocation
    phase = update.get("phase", previous.get("phase"))
    reason = update.get("reason") or phase or ""
    events.post(invocation, reason, update.get("message", ""), warning=phase == status.FAILED)
    # A run waiting for its Action is not over: it starts when the Action appears.
    if "phase" not in update or phase not in status.FINISHED or reason == invocations.ACTION_NOT_FOUND:
        return
    spec, final = invocation["spec"], invocation.get("status") or {}
    meta = invocation["metadata"]
    try:
        announce(invocations.start_next(meta["namespace"], spec["action"], meta["name"]))
    except Exception as error:  # the reconciliation pass starts queued runs too
        logger.warning("could not start the run queued after %s: %s", meta["name"], error)
    metrics.invocations_finished.labels(spec["action"], phase).inc()
    if final.get("startTime") and final.get("completionTime"):
        elapsed = timestamps.parse(final["completionTime"]) - timestamps.parse(final["startTime"])
        metrics.run_duration.labels(spec["action"]).observe(elapsed.total_seconds())
    if spec.get("trigger"):
        try:
            triggers.apply_retention(invocation["metadata"]["namespace"], spec["trigger"])
        except Exception as error:  # pruning is retried by the periodic reconciliation
            logger.warning("retention of trigger %s failed: %s", spec["trigger"], error)
