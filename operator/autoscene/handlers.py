"""Every event the operator reacts to, on one screen. The work lives in the modules they call."""

import asyncio
import concurrent.futures
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import kopf

from . import (
    GROUP,
    VERSION,
    actions,
    config,
    dispatching,
    files,
    filewatch,
    invocations,
    jobwatch,
    kube,
    labels,
    lifecycle,
    logkeeping,
    metrics,
    outputs,
    podwatch,
    publishing,
    records,
    runs,
    tallies,
    triggers,
)
from . import settings as operator_settings
from .reconciler import Reconciler
from .status import job_ended

ACTIONS, RECORDS, INVOCATIONS, TRIGGERS = "actions", "records", "invocations", "triggers"
FILES = files.PLURAL
# A failed call is retried soon: most failures here are brief (a conflict, a restarting server).
RETRY_SECONDS = (1, 2, 4, 8)
# A refused claim waits for someone to raise a quota or change a policy: no point in asking often.
CLAIM_RETRY_SECONDS = 60
# A claim that does not exist yet (applied after its Record) or is still being deleted: looked at again
# sooner than a refused one, as it needs no one to act.
CLAIM_WAIT_SECONDS = 5
Handler = TypeVar("Handler", bound=Callable[..., Any])
Result = TypeVar("Result")


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


async def _soon(logger: kopf.Logger, what: str, call: Callable[..., Result], *arguments: Any) -> Result:
    """`call(*arguments)` on a worker thread, and what it returned. kopf does not retry event handlers,
    so a failure is tried again here after 1, 2, 4 and 8 s (or after the delay an
    `invocations.NotReady` asks for), and after that by the reconciliation pass."""
    for delay in RETRY_SECONDS:
        try:
            return await asyncio.to_thread(call, *arguments)
        except Exception as error:
            if isinstance(error, invocations.NotReady):  # waiting for something that comes by itself
                logger.info(f"{what} waits {error.delay} s: {error}")
                wait = error.delay
            else:
                logger.warning(f"{what} failed, trying again in {delay} s: {error}")
                wait = delay
        await asyncio.sleep(wait)
    return await asyncio.to_thread(call, *arguments)  # the last try: its failure is kopf's to log


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings.apply(settings)
    kube.configure()
    metrics.in_flight.clear()
    settings_now = config.current()
    memo.reconciler = Reconciler(
        settings_now.namespaces, settings_now.reconcile_seconds, settings_now.retention_seconds
    )
    memo.reconciler.start()
    if settings_now.keep_logs:
        logkeeping.KEEPER.serve(settings_now.log_port, logkeeping.advertised_host())
    memo.record_totals = tallies.Tally(RECORDS, files.record_status)
    # Shared by every handler's copy of the memo: started by `record_seen`, stopped at cleanup.
    memo.files = filewatch.FileWatch(
        settings_now.namespaces, lambda key: memo.record_totals.changed(key, memo.files.sizes)
    )
    memo.trigger_history = tallies.Tally(TRIGGERS, triggers.history_status)
    # Each Trigger's Invocations (`triggers.fired_run`), kept by `invocation_seen`.
    memo.trigger_runs = tallies.Entries()
    # The uids of the Invocations whose run is final, as last seen (by `invocation_seen`): Job events
    # of those runs need no API call. A set of its own: a kopf index costs a handler call per event.
    memo.finished_runs = set()


@kopf.on.startup()
def count_runs_by_trigger(memo: kopf.Memo, **_: Any) -> None:
    """The Triggers' histories as they are before the first Invocation event: counts written while the
    operator's first listing of Invocations is still under way would show a part of them."""
    for namespace in config.current().namespaces or [None]:
        for page in kube.pages_of_custom(INVOCATIONS, namespace):
            for invocation in page:
                if (fired := triggers.fired_run(invocation)) is not None:
                    memo.trigger_runs.put(*fired)


@kopf.on.startup()
async def threads_for_api_calls(**_: Any) -> None:
    """The pool `asyncio.to_thread` runs the handlers' API calls on: asyncio's default is min(32, CPUs
    + 4) threads, 6 on a 2-CPU node, and every dispatch, start and status write waits for one of them
    while most of their time is spent waiting for the API server."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=kube.API_THREADS, thread_name_prefix="api")
    asyncio.get_running_loop().set_default_executor(pool)


@kopf.on.startup()
async def follow_run_pods(logger: kopf.Logger, **_: Any) -> None:
    """The runs' Pods (`podwatch`); a run whose Pod waits in trouble has its status written again."""
    loop = asyncio.get_running_loop()

    async def resync(job: podwatch.JobKey) -> None:
        try:
            await _soon(logger, f"recording why {job[1]} waits", invocations.resync, *job)
        except Exception as error:  # the periodic pass tries again
            logger.warning(f"recording why {job[1]} waits failed: {error}")

    def on_trouble(job: podwatch.JobKey) -> None:  # on a reader thread: the work goes to the loop
        asyncio.run_coroutine_threadsafe(resync(job), loop)

    podwatch.PODS.start(config.current().namespaces, on_trouble)


@kopf.on.cleanup()
def stop_reconciling(memo: kopf.Memo, **_: Any) -> None:
    if "reconciler" in memo:
        memo.reconciler.stop()
    if "files" in memo:
        memo.files.stop()
    podwatch.PODS.stop()
    jobwatch.JOBS.stop()
    if "stop" in memo:  # the stop flag kopf waits on (runtime.run_operator): raised, so kopf can exit
        memo.stop.set()


@kopf.on.cleanup()
async def stop_tallies(memo: kopf.Memo, **_: Any) -> None:
    """On the event loop (a sync handler would run on a thread, and a loop's timers and tasks are not
    for other threads to cancel): the writes not yet made are dropped before the loop closes its pool."""
    for tally in ("record_totals", "trigger_history"):
        if tally in memo:
            memo[tally].stop()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


# Records -----------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, RECORDS, backoff=RETRY_SECONDS[-1])
@kopf.on.create(GROUP, VERSION, RECORDS, backoff=RETRY_SECONDS[-1])
@_counting_errors
def record_created(body: kopf.Body, **_: Any) -> None:
    """The Record's claim, and a status that says whether files can go in."""
    try:
        records.provision(dict(body))
    except records.ClaimRefused as error:
        delay = CLAIM_WAIT_SECONDS if isinstance(error, records.ClaimPending) else CLAIM_RETRY_SECONDS
        raise kopf.TemporaryError(str(error), delay=delay) from error


# (The index functions are `async`: pure and quick, kopf calls them on its event loop instead of
# handing each watch event to a thread of its executor.)
@kopf.index(GROUP, VERSION, RECORDS)
async def known_records(
    namespace: str | None,
    name: str,
    uid: str,
    labels: kopf.Labels,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, Any]:
    """Each Record as dispatch and a run's start need it: uid (for Events about it), labels (which
    Triggers' record selectors match), its claim."""
    claim = records.claim_of({"spec": dict(spec), "status": dict(status)})
    record = {"metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": dict(labels)}}
    return {(namespace, name): {**record, "status": {"claimName": claim} if claim else {}}}


@kopf.index(GROUP, VERSION, ACTIONS)
async def known_actions(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    """Each Action's spec, so that starting a run reads none."""
    return {(namespace, name): {"metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)}}


def _indexed(indexes: dict[str, Any], index: str, namespace: str, name: str) -> Mapping[str, Any] | None:
    """The one object of that name in a kopf index. On kopf's event loop only: the indexes change
    there, and a thread reading one meanwhile can fail ("dictionary changed size during iteration")."""
    return next(iter(indexes[index].get((namespace, name), [])), None)


class IndexLookup:
    """Actions and Records as kopf's indexes (kept current by its watches) hold them when this is
    made, on the event loop, for use on a worker thread; a name not found there (a watch event still
    on its way) is read from the API before it is taken as missing."""

    def __init__(
        self,
        indexes: dict[str, Any],
        namespace: str,
        actions: Iterable[str] = (),
        records: Iterable[str] = (),
    ) -> None:
        self.namespace = namespace
        self._actions = {name: _indexed(indexes, "known_actions", namespace, name) for name in actions}
        self._records = {name: _indexed(indexes, "known_records", namespace, name) for name in records}

    def action(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        found = self._actions.get(name) if namespace == self.namespace else None
        return found or invocations.FROM_API.action(namespace, name)

    def record(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        found = self._records.get(name) if namespace == self.namespace else None
        return found if found and found["status"] else invocations.FROM_API.record(namespace, name)


# Files -------------------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, TRIGGERS)
async def triggers_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
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
async def trigger_changed(type: str, body: kopf.Body, **indexes: Any) -> None:
    """Whether the Trigger can fire, in its Ready condition (and a Warning Event when it cannot); its
    catch-up on the files already there, when it asks for one (`spec.backfill`)."""
    metrics.watch_event(TRIGGERS)
    namespace = body.metadata.namespace or ""
    if type == "DELETED":
        triggers.forget(namespace, body.metadata.name or "")
        return
    triggers.remember(body)
    lookup = IndexLookup(indexes, namespace, actions=[body.spec.get("action", "")])
    await asyncio.to_thread(triggers.refresh_readiness, dict(body), lookup.action)
    if triggers.needs_backfill(body):
        known = {  # every Record of the namespace, as the index has them now
            key[1]: record
            for key, found in indexes["known_records"].items()
            if key[0] == namespace and (record := next(iter(found), None)) is not None
        }

        def labels_of(record: str) -> Mapping[str, str] | None:
            found = known.get(record) or invocations.FROM_API.record(namespace, record)
            return (found["metadata"].get("labels") or {}) if found else None

        await asyncio.to_thread(triggers.backfill, dict(body), labels_of)


@kopf.on.event(GROUP, VERSION, RECORDS)
async def record_seen(memo: kopf.Memo, logger: kopf.Logger, **indexes: Any) -> None:
    """Follow the Records' files (`filewatch`: one list and watch, not kopf's per-object workers),
    from the first Record event on: kopf calls this once its indexes hold every Record and Trigger, so
    no file is dispatched against an index still filling."""
    if memo.files.started:
        return

    async def dispatch(file: dict[str, Any]) -> None:
        namespace, record = file["metadata"]["namespace"], file["spec"]["record"]
        known = _indexed(indexes, "known_records", namespace, record)
        if known is None:  # a Record not seen yet: the reconciliation pass dispatches the file later
            return
        namespace_triggers = list(indexes["triggers_by_namespace"].get(namespace, []))
        labels_of_record = known["metadata"]["labels"]
        await _soon(logger, "dispatch", dispatching.dispatch, file, labels_of_record, namespace_triggers)

    memo.files.start(dispatch)


# Invocations -------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, INVOCATIONS)
@_counting_errors
async def invocation_seen(
    type: str,
    body: kopf.Body,
    uid: str,
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **indexes: Any,
) -> None:
    """A new Invocation gets its Job (or waits for its Action, or queues); the counts follow every change.

    Only a run with no phase yet is started here; runs that wait are started by what they wait for
    (their Action's creation, a free slot) and by the reconciliation pass. No kopf bookkeeping is
    written on the Invocation: starting is idempotent (the Job's name is the Invocation's)."""
    metrics.watch_event(INVOCATIONS)
    if namespace is None:
        return
    if type == "DELETED":
        metrics.in_flight.forget(uid)
        invocations.forget(namespace, name)
    else:
        metrics.in_flight.observe(uid, status.get("phase"))
    if type != "DELETED" and lifecycle.is_finished(status):
        memo.finished_runs.add(uid)
    else:
        memo.finished_runs.discard(uid)
    if (fired := triggers.fired_run(body)) is not None:
        trigger = memo.trigger_runs.drop(*fired[:2]) if type == "DELETED" else memo.trigger_runs.put(*fired)
        memo.trigger_history.changed(trigger, memo.trigger_runs)
    if type != "DELETED" and runs.cancel_requested(body) and not lifecycle.is_finished(status):
        await _soon(logger, f"cancelling {name}", invocations.cancel, dict(body))
        return
    if type != "DELETED" and not status.get("phase"):
        lookup = IndexLookup(indexes, namespace, actions=[spec["action"]], records=[spec["record"]])
        if type == "ADDED" and spec.get("trigger"):
            record = _indexed(indexes, "known_records", namespace, spec["record"])
            await asyncio.to_thread(
                dispatching.announce_firing, body, record["metadata"]["uid"] if record else ""
            )
        await _soon(logger, f"starting {name}", _start, dict(body), lookup)


def _start(invocation: dict[str, Any], lookup: invocations.Lookup) -> None:
    """Label a manual run as the operator labels its own (to list runs by Action), then start it."""
    spec = invocation["spec"]
    wanted = labels.for_invocation(action=spec["action"], record=spec["record"], trigger=spec.get("trigger"))
    present = invocation["metadata"].get("labels") or {}
    # Only labels it lacks: a value the user set (a GitOps copy, say) is never overwritten.
    missing = {key: value for key, value in wanted.items() if key not in present}
    if missing:
        meta = invocation["metadata"]
        kube.custom().patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], INVOCATIONS, meta["name"], {"metadata": {"labels": missing}}
        )
        invocation = {**invocation, "metadata": {**meta, "labels": {**present, **missing}}}
    invocations.start(invocation, lookup)


@kopf.on.startup()
async def follow_run_jobs(logger: kopf.Logger, memo: kopf.Memo, **_: Any) -> None:
    """The operator's Jobs (`jobwatch`): each change is mirrored into its Invocation."""

    @_counting_errors
    async def job_changed(body: dict[str, Any], deleted: bool) -> None:
        """The Job's progress, mirrored into its Invocation (a Job deleted before it ended fails the
        run); a run that succeeded with an output Record goes on to its publish Job, which ends it."""
        owner = invocations.owner_of(body)
        namespace = body["metadata"].get("namespace")
        if owner is None or namespace is None:
            return
        if owner[1] in memo.finished_runs:
            return  # its run's record is final: nothing a Job event says changes it (no API call needed)
        # A Job deleted once it ended (its TTL) carries its end: a run's end is read from it, even
        # when the deletion came before that end was recorded.
        job = None if deleted and job_ended(body) is None else body
        if outputs.is_publish_job(body):
            await _soon(
                logger,
                f"registering the outputs of {owner[0]}",
                publishing.sync_with_publish_job,
                namespace,
                job,
                *owner,
            )
            return
        transition = await _soon(
            logger, f"recording the job of {owner[0]}", invocations.sync_with_job, namespace, job, *owner
        )
        if transition is not None and transition.update.get("reason") == outputs.REGISTERING:
            await _soon(
                logger, f"publishing the outputs of {owner[0]}", publishing.start, transition.invocation
            )

    namespaces = config.current().namespaces
    try:  # as kopf fills its indexes before the first event: the Jobs listed first need no API call
        memo.finished_runs.update(await asyncio.to_thread(invocations.finished_uids, namespaces))
    except Exception as error:  # the Job events read their Invocations instead
        logger.warning(f"listing the finished runs failed: {error}")
    jobwatch.JOBS.start(namespaces, job_changed)


# Actions -----------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, ACTIONS)
@_counting_errors
async def action_changed(
    type: str, body: kopf.Body, name: str, namespace: str | None, logger: kopf.Logger, **indexes: Any
) -> None:
    """An Action that appears (or is seen at start-up) starts the Invocations that waited for it; the
    Triggers that name it say whether it exists."""
    metrics.watch_event(ACTIONS)
    if namespace is None:
        return
    naming_it = [
        indexed["metadata"]["name"]
        for indexed in indexes["triggers_by_namespace"].get(namespace, [])
        if indexed["spec"].get("action") == name
    ]
    lookup = IndexLookup(indexes, namespace, actions=[name])
    await asyncio.to_thread(_follow_action, type, dict(body), namespace, naming_it, lookup, logger)


def _follow_action(
    type: str,
    action: dict[str, Any],
    namespace: str,
    naming_it: list[str],
    lookup: IndexLookup,
    logger: kopf.Logger,
) -> None:
    name = action["metadata"]["name"]
    if type != "DELETED":
        try:
            actions.refresh_readiness(action)
        except Exception as error:  # the reconciliation pass refreshes it too
            logger.warning(f"could not write the Action's condition: {error}")
        for invocation in invocations.waiting_for_action(namespace, name):
            try:
                invocations.start(invocation)
            except Exception as error:  # one run's trouble must not keep the others waiting
                logger.warning(f"could not start {invocation['metadata']['name']}: {error}")
    for trigger_name in naming_it:
        try:
            trigger = kube.get_custom(TRIGGERS, namespace, trigger_name)
            if trigger is not None:
                triggers.refresh_readiness(trigger, lookup.action)
        except Exception as error:  # the reconciliation pass refreshes it too
            logger.warning(f"could not refresh trigger {trigger_name}: {error}")
