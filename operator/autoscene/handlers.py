"""Every event the operator reacts to, on one screen. The work lives in the modules they call."""

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import kopf

from . import (
    GROUP,
    VERSION,
    dispatching,
    events,
    files,
    invocations,
    kube,
    labels,
    metrics,
    records,
    tallies,
    triggers,
)
from . import settings as operator_settings
from .reconciler import Reconciler

ACTIONS, RECORDS, INVOCATIONS, TRIGGERS = "actions", "records", "invocations", "triggers"
FILES = files.PLURAL
# A failed API call is retried soon: most failures here are brief (a conflict, a restarting server).
RETRY_SECONDS = 5
DISPATCH_RETRY_SECONDS = (1, 2, 4, 8)
Handler = TypeVar("Handler", bound=Callable[..., Any])


def _counting_errors(handler: Handler) -> Handler:
    """Count a handler's failures for the metrics; kopf still logs (and, but for events, retries) them."""

    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(*args, **kwargs)
            except Exception:
                metrics.handler_errors.labels(handler.__name__).inc()
                raise

        return cast(Handler, awaited)

    @functools.wraps(handler)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except Exception:
            metrics.handler_errors.labels(handler.__name__).inc()
            raise

    return cast(Handler, counted)


@contextlib.contextmanager
def _retried_soon() -> Iterator[None]:
    """The core's "not yet" (`invocations.NotReady`) in kopf's words: retry the handler after a delay."""
    try:
        yield
    except invocations.NotReady as error:
        raise kopf.TemporaryError(str(error), delay=error.delay) from error


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings.apply(settings)
    kube.configure()
    metrics.in_flight.clear()
    memo.reconciler = Reconciler(memo.get("namespaces"))
    memo.reconciler.start()
    memo.record_totals = tallies.Tally(RECORDS, files.record_status)
    memo.trigger_history = tallies.Tally(TRIGGERS, triggers.history_status)


@kopf.on.cleanup()
def stop_reconciling(memo: kopf.Memo, **_: Any) -> None:
    if "reconciler" in memo:
        memo.reconciler.stop()
    if "stop" in memo:  # the stop flag kopf waits on (runtime.run_operator): raised, so kopf can exit
        memo.stop.set()


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


@kopf.index(GROUP, VERSION, RECORDS)
def known_records(
    namespace: str | None, name: str, uid: str, labels: kopf.Labels, **_: Any
) -> dict[Any, Any]:
    """Each Record's uid (for Events about it) and labels (which Triggers' record selectors match)."""
    return {(namespace, name): (uid, dict(labels))}


# Files -------------------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, TRIGGERS)
def triggers_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The Triggers of each namespace, so that a file's dispatch lists none."""
    meta = body.metadata
    return {
        namespace: {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "metadata": {
                "name": meta.name,
                "namespace": namespace,
                "uid": meta.uid,
                "resourceVersion": meta.get("resourceVersion"),
            },
            "spec": dict(body.spec),
        }
    }


@kopf.on.event(GROUP, VERSION, TRIGGERS)
@_counting_errors
def trigger_changed(type: str, body: kopf.Body, **_: Any) -> None:
    """Whether the Trigger can fire, in its Ready condition (and a Warning Event when it cannot)."""
    metrics.watch_event(TRIGGERS)
    if type != "DELETED":
        triggers.refresh_readiness(dict(body))


@kopf.index(GROUP, VERSION, FILES)
def file_sizes(namespace: str | None, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    """Each Record's files as (size, addedAt): all its status totals need, nothing more."""
    return {(namespace, spec["record"]): (spec["size"], spec["addedAt"])}


@kopf.on.event(GROUP, VERSION, FILES)
@_counting_errors
async def file_changed(
    type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **indexes: Any
) -> None:
    """New content becomes Invocations, once; the Record's totals follow every change."""
    metrics.watch_event(FILES)
    record = body.spec["record"]
    if namespace is None:
        return
    records: kopf.Index[Any, Any] = indexes["known_records"]
    if type != "DELETED" and files.needs_dispatch(body) and (namespace, record) in records:
        [(_, labels_of_record)] = records[namespace, record]
        namespace_triggers = list(indexes["triggers_by_namespace"].get(namespace, []))
        # kopf does not retry event handlers: a failed dispatch is tried again here, soon, and after
        # that by the reconciliation pass.
        for delay in (*DISPATCH_RETRY_SECONDS, None):
            try:
                await asyncio.to_thread(
                    dispatching.dispatch, dict(body), labels_of_record, namespace_triggers
                )
                break
            except Exception as error:
                if delay is None:
                    raise
                logger.warning(f"dispatch failed, trying again in {delay} s: {error}")
                await asyncio.sleep(delay)
    memo.record_totals.changed((namespace, record), indexes["file_sizes"])


# Invocations -------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, INVOCATIONS, backoff=RETRY_SECONDS)
@kopf.on.create(GROUP, VERSION, INVOCATIONS, backoff=RETRY_SECONDS)
@_counting_errors
def invocation_created(
    body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, reason: str, **indexes: Any
) -> None:
    wanted = labels.for_invocation(action=spec["action"], record=spec["record"], trigger=spec.get("trigger"))
    missing = {key: value for key, value in wanted.items() if body.metadata.labels.get(key) != value}
    if missing:
        patch.metadata.labels.update(missing)
    if reason == "create" and spec.get("trigger"):
        record = indexes["known_records"].get((body.metadata.namespace, spec["record"]), [("", {})])
        dispatching.announce_firing(body, next(iter(record))[0])
    with _retried_soon():
        invocations.start(dict(body))


@kopf.index(GROUP, VERSION, INVOCATIONS)
def trigger_runs(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[Any, Any]:
    """Each Trigger's Invocations as (creationTimestamp, name): all its status needs."""
    if not spec.get("trigger"):
        return {}
    return {(namespace, spec["trigger"]): (meta.get("creationTimestamp", ""), name)}


@kopf.on.event(GROUP, VERSION, INVOCATIONS)
async def invocation_seen(
    type: str,
    uid: str,
    namespace: str | None,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: kopf.Memo,
    **indexes: Any,
) -> None:
    metrics.watch_event(INVOCATIONS)
    if type == "DELETED":
        metrics.in_flight.forget(uid)
    else:
        metrics.in_flight.observe(uid, status.get("phase"))
    if namespace is not None and spec.get("trigger"):
        memo.trigger_history.changed((namespace, spec["trigger"]), indexes["trigger_runs"])


@kopf.on.event("batch", "v1", "jobs", labels={labels.MANAGED_BY: labels.MANAGER})
@_counting_errors
def job_changed(body: kopf.Body, type: str, namespace: str | None, **_: Any) -> None:
    """The Job's progress, mirrored into its Invocation (a Job deleted before it ended fails the run)."""
    metrics.watch_event("jobs")
    owner = invocations.owner_of(body)
    if owner is None or namespace is None:
        return
    job = None if type == "DELETED" else dict(body)
    invocations.sync_with_job(namespace, job, *owner)


# Actions -----------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, ACTIONS)
@_counting_errors
def action_changed(type: str, name: str, namespace: str | None, logger: kopf.Logger, **indexes: Any) -> None:
    """An Action that appears (or is seen at start-up) starts the Invocations that waited for it; the
    Triggers that name it say whether it exists."""
    metrics.watch_event(ACTIONS)
    if namespace is None:
        return
    if type != "DELETED":
        for invocation in invocations.waiting_for_action(namespace, name):
            try:
                invocations.start(invocation)
            except Exception as error:  # one run's trouble must not keep the others waiting
                logger.warning(f"could not start {invocation['metadata']['name']}: {error}")
    for indexed in indexes["triggers_by_namespace"].get(namespace, []):
        if indexed["spec"].get("action") != name:
            continue
        try:
            trigger = kube.get_custom(TRIGGERS, namespace, indexed["metadata"]["name"])
            if trigger is not None:
                triggers.refresh_readiness(trigger)
        except Exception as error:  # the reconciliation pass refreshes it too
            logger.warning(f"could not refresh trigger {indexed['metadata']['name']}: {error}")
