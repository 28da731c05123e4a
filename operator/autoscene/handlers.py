"""Every event the operator reacts to, on one screen. The work lives in the modules they call."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import kopf

from . import GROUP, VERSION, invocations, kube, labels, metrics, records, timestamps, triggers
from . import settings as operator_settings
from . import status as run_status

ACTIONS, TRIGGERS, RECORDS, INVOCATIONS = "actions", "triggers", "records", "invocations"
# A failed API call is retried soon: most failures here are brief (a conflict, a restarting server).
RETRY_SECONDS = 5
DISPATCH_RETRY_SECONDS = 20
RETENTION_CHECK_SECONDS = 600
Handler = TypeVar("Handler", bound=Callable[..., Any])


def _counting_errors(handler: Handler) -> Handler:
    """Count a handler's failures for the metrics; kopf still logs and retries them."""

    @functools.wraps(handler)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except Exception:
            metrics.handler_errors.labels(handler.__name__).inc()
            raise

    return cast(Handler, counted)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    operator_settings.apply(settings)
    kube.configure()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


# Records -----------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, RECORDS, backoff=RETRY_SECONDS)
@kopf.on.create(GROUP, VERSION, RECORDS, backoff=RETRY_SECONDS)
@_counting_errors
def record_created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    claim = records.ensure_claim(body)
    if (body.get("status") or {}).get("claimName") != claim or (body.get("status") or {}).get(
        "phase"
    ) != "Ready":
        patch.status["claimName"] = claim
        patch.status["phase"] = "Ready"
        patch.status["message"] = f'files are kept on claim "{claim}"'
        _event(body, "ClaimReady", f'files are kept on PersistentVolumeClaim "{claim}"')


@kopf.on.event(GROUP, VERSION, RECORDS)
@_counting_errors
def record_changed(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Turn the Record's new files into Invocations: once each, whatever repeats the event."""
    _dispatch(body, logger)


@kopf.timer(GROUP, VERSION, RECORDS, interval=DISPATCH_RETRY_SECONDS, idle=DISPATCH_RETRY_SECONDS)
@_counting_errors
def record_dispatch_retried(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Events are not retried: a dispatch that failed (the API briefly away) is done again here."""
    _dispatch(body, logger)


def _dispatch(record: kopf.Body, logger: kopf.Logger) -> None:
    for invocation in records.due_invocations(record):
        namespace, name = invocation["metadata"]["namespace"], invocation["metadata"]["name"]
        if kube.create_custom(INVOCATIONS, invocation):
            spec = invocation["spec"]
            message = f'Trigger "{spec["trigger"]}" fired on "{spec["file"]}": invocation {name}'
            logger.info(message)
            _event(record, "TriggerFired", message)
            triggers.count_firing(namespace, spec["trigger"], name)
    records.mark_dispatched(record)


# Invocations -------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, INVOCATIONS, backoff=RETRY_SECONDS)
@kopf.on.create(GROUP, VERSION, INVOCATIONS, backoff=RETRY_SECONDS)
@_counting_errors
def invocation_created(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    wanted = labels.for_invocation(action=spec["action"], record=spec["record"], trigger=spec.get("trigger"))
    missing = {key: value for key, value in wanted.items() if body.metadata.labels.get(key) != value}
    if missing:
        patch.metadata.labels.update(missing)
    _write_start(body)


@kopf.on.event("batch", "v1", "jobs", labels={labels.MANAGED_BY: labels.MANAGER})
@_counting_errors
def job_changed(body: kopf.Body, type: str, namespace: str | None, **_: Any) -> None:
    if type == "DELETED" or namespace is None:
        return
    found = invocations.status_from_job(body)
    if found is None:
        return
    name, wanted = found
    invocation = kube.get_custom(INVOCATIONS, namespace, name)
    if invocation is None:
        return
    current = invocation.get("status") or {}
    update = invocations.changed_fields(current, wanted)
    if not update:
        return
    kube.patch_custom_status(INVOCATIONS, namespace, name, update)
    _transitioned(invocation, current.get("phase"), wanted)


# Actions -----------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, ACTIONS)
@_counting_errors
def action_changed(type: str, name: str, namespace: str | None, **_: Any) -> None:
    """An Action that appears (or is seen at start-up) starts the Invocations that waited for it."""
    if type == "DELETED" or namespace is None:
        return
    for invocation in invocations.waiting_for_action(namespace, name):
        _write_start(invocation)


def _write_start(invocation: Any) -> None:
    update = invocations.start(invocation)
    if update is None:
        return
    meta = invocation["metadata"]
    kube.patch_custom_status(INVOCATIONS, meta["namespace"], meta["name"], update)
    _transitioned(invocation, (invocation.get("status") or {}).get("phase"), update)


@kopf.on.event(GROUP, VERSION, INVOCATIONS)
def invocation_seen(type: str, uid: str, status: kopf.Status, **_: Any) -> None:
    if type == "DELETED":
        metrics.in_flight.forget(uid)
    else:
        metrics.in_flight.observe(uid, status.get("phase"))


def _transitioned(invocation: Any, previous: str | None, update: dict[str, Any]) -> None:
    """What follows a new phase: an Event a user sees, metrics, and the Trigger's retention policy."""
    phase = update.get("phase")
    if (
        not phase
        or phase == previous
        and update.get("reason") == (invocation.get("status") or {}).get("reason")
    ):
        return
    reason = update.get("reason") or phase
    _event(invocation, reason, update.get("message", ""), warning=phase == run_status.FAILED)
    if phase in run_status.FINISHED:
        spec = invocation["spec"]
        metrics.invocations_finished.labels(spec["action"], phase).inc()
        if update.get("startTime") and update.get("completionTime"):
            elapsed = timestamps.parse(update["completionTime"]) - timestamps.parse(update["startTime"])
            metrics.run_duration.labels(spec["action"]).observe(elapsed.total_seconds())
        if spec.get("trigger"):
            triggers.apply_retention(invocation["metadata"]["namespace"], spec["trigger"])


# Triggers ----------------------------------------------------------------------------------------


@kopf.timer(GROUP, VERSION, TRIGGERS, interval=RETENTION_CHECK_SECONDS, idle=RETENTION_CHECK_SECONDS)
@_counting_errors
def trigger_history_pruned(name: str, namespace: str | None, spec: kopf.Spec, **_: Any) -> None:
    """Age limits take effect even when a Trigger has stopped firing."""
    if namespace is not None and spec.get("retention"):
        triggers.apply_retention(namespace, name)


def _event(obj: Any, reason: str, message: str, warning: bool = False) -> None:
    # Posted on purpose, whatever the level of handler log lines that kopf turns into Events.
    kopf.event(obj, type="Warning" if warning else "Normal", reason=reason, message=message)
