"""Every event the operator reacts to, on one screen. The work lives in the modules they call."""

from typing import Any

import kopf

from . import GROUP, VERSION, invocations, kube, labels, records, status, triggers
from . import settings as operator_settings

ACTIONS, TRIGGERS, RECORDS, INVOCATIONS = "actions", "triggers", "records", "invocations"
# A failed API call is retried soon: most failures here are brief (a conflict, a restarting server).
RETRY_SECONDS = 5
DISPATCH_RETRY_SECONDS = 20


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
def record_changed(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Turn the Record's new files into Invocations: once each, whatever repeats the event."""
    _dispatch(body, logger)


@kopf.timer(GROUP, VERSION, RECORDS, interval=DISPATCH_RETRY_SECONDS, idle=DISPATCH_RETRY_SECONDS)
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
def invocation_created(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    wanted = labels.for_invocation(action=spec["action"], record=spec["record"], trigger=spec.get("trigger"))
    missing = {key: value for key, value in wanted.items() if body.metadata.labels.get(key) != value}
    if missing:
        patch.metadata.labels.update(missing)
    _write_start(body)


@kopf.on.event("batch", "v1", "jobs", labels={labels.MANAGED_BY: labels.MANAGER})
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
    if update.get("phase") and update["phase"] != current.get("phase"):
        _announce(invocation, wanted)


# Actions -----------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, ACTIONS)
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
    _announce(invocation, update)


def _announce(invocation: Any, update: dict[str, Any]) -> None:
    """A Kubernetes Event on the Invocation for each transition a user should see."""
    reason = update.get("reason") or update.get("phase", "")
    _event(invocation, reason, update.get("message", ""), warning=update.get("phase") == status.FAILED)


def _event(obj: Any, reason: str, message: str, warning: bool = False) -> None:
    # Posted on purpose, whatever the level of handler log lines that kopf turns into Events.
    kopf.event(obj, type="Warning" if warning else "Normal", reason=reason, message=message)
