"""Every event the operator reacts to, on one screen. The work lives in the modules they call."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import kopf

from . import GROUP, VERSION, events, invocations, kube, labels, metrics, records, transitions
from . import settings as operator_settings
from .reconciler import Reconciler, dispatch_and_announce

ACTIONS, RECORDS, INVOCATIONS = "actions", "records", "invocations"
# A failed API call is retried soon: most failures here are brief (a conflict, a restarting server).
RETRY_SECONDS = 5
Handler = TypeVar("Handler", bound=Callable[..., Any])


def _counting_errors(handler: Handler) -> Handler:
    """Count a handler's failures for the metrics; kopf still logs (and, but for events, retries) them."""

    @functools.wraps(handler)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except Exception:
            metrics.handler_errors.labels(handler.__name__).inc()
            raise

    return cast(Handler, counted)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings.apply(settings)
    kube.configure()
    metrics.in_flight.clear()
    memo.reconciler = Reconciler()
    memo.reconciler.start()


@kopf.on.cleanup()
def stop_reconciling(memo: kopf.Memo, **_: Any) -> None:
    if "reconciler" in memo:
        memo.reconciler.stop()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


# Records -----------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, RECORDS, backoff=RETRY_SECONDS)
@kopf.on.create(GROUP, VERSION, RECORDS, backoff=RETRY_SECONDS)
@_counting_errors
def record_created(body: kopf.Body, status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    claim = records.ensure_claim(body)
    if status.get("claimName") != claim or status.get("phase") != "Ready":
        patch.status["claimName"] = claim
        patch.status["phase"] = "Ready"
        patch.status["message"] = f'files are kept on claim "{claim}"'
        events.post(body, "ClaimReady", f'files are kept on PersistentVolumeClaim "{claim}"')


@kopf.on.event(GROUP, VERSION, RECORDS)
@_counting_errors
def record_changed(type: str, body: kopf.Body, **_: Any) -> None:
    """Turn the Record's new files into Invocations: once each, whatever repeats the event."""
    if type != "DELETED":
        dispatch_and_announce(dict(body))


# Invocations -------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, INVOCATIONS, backoff=RETRY_SECONDS)
@kopf.on.create(GROUP, VERSION, INVOCATIONS, backoff=RETRY_SECONDS)
@_counting_errors
def invocation_created(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    wanted = labels.for_invocation(action=spec["action"], record=spec["record"], trigger=spec.get("trigger"))
    missing = {key: value for key, value in wanted.items() if body.metadata.labels.get(key) != value}
    if missing:
        patch.metadata.labels.update(missing)
    transitions.announce(invocations.start(dict(body)))


@kopf.on.event(GROUP, VERSION, INVOCATIONS)
def invocation_seen(type: str, uid: str, status: kopf.Status, **_: Any) -> None:
    if type == "DELETED":
        metrics.in_flight.forget(uid)
    else:
        metrics.in_flight.observe(uid, status.get("phase"))


@kopf.on.event("batch", "v1", "jobs", labels={labels.MANAGED_BY: labels.MANAGER})
@_counting_errors
def job_changed(body: kopf.Body, type: str, namespace: str | None, **_: Any) -> None:
    """The Job's progress, mirrored into its Invocation (a Job deleted before it ended fails the run)."""
    owner = invocations.owner_of(body)
    if owner is None or namespace is None:
        return
    job = None if type == "DELETED" else dict(body)
    transitions.announce(invocations.sync_with_job(namespace, job, *owner))


# Actions -----------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, ACTIONS)
@_counting_errors
def action_changed(type: str, name: str, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
    """An Action that appears (or is seen at start-up) starts the Invocations that waited for it."""
    if type == "DELETED" or namespace is None:
        return
    for invocation in invocations.waiting_for_action(namespace, name):
        try:
            transitions.announce(invocations.start(invocation))
        except Exception as error:  # one run's trouble must not keep the others waiting
            logger.warning(f"could not start {invocation['metadata']['name']}: {error}")
