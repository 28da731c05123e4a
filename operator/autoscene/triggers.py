"""Trigger bookkeeping: whether it can fire (its Ready condition), its run history in its status, and
the retention policy that prunes that history."""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import conditions, events, files, firing, kube, labels, retention, templates, timestamps

READY = "Ready"


def readiness_of(trigger: Mapping[str, Any], action: Mapping[str, Any] | None) -> conditions.Readiness:
    """The Trigger's Ready condition as (status, reason, message): False when it cannot fire (a glob or
    selector that does not parse, `suspend`), when its Action is missing (its runs would wait
    Pending), or when its parameters are not what its Action declares (every run it starts would
    fail `InvalidParameters`: a name the Action does not declare, a required one left unset)."""
    spec, namespace = trigger.get("spec") or {}, trigger["metadata"].get("namespace", "")
    why = firing.unusable(trigger)
    if why is not None:
        return conditions.FALSE, why[0], f"this Trigger cannot fire: {why[1]}"
    if action is None:
        return (
            conditions.FALSE,
            "ActionNotFound",
            f'Action "{spec.get("action")}" does not exist in namespace "{namespace}": the runs this Trigger '
            "starts wait (Pending) until it is created",
        )
    try:
        templates.resolve(
            (action.get("spec") or {}).get("parameters") or [], ("the Trigger", spec.get("parameters"))
        )
    except templates.ParameterError as error:
        return (
            conditions.FALSE,
            templates.INVALID_PARAMETERS,
            f"every run this Trigger starts would fail: {error}",
        )
    if spec.get("suspend"):
        return conditions.FALSE, "Suspended", "spec.suspend is true: no file fires this Trigger"
    return (
        conditions.TRUE,
        "Armed",
        f'fires Action "{spec.get("action")}" on files matching "{spec.get("fileGlob")}"',
    )


ActionLookup = Callable[[str, str], Mapping[str, Any] | None]  # (namespace, name) → the Action or None


def _action_from_api(namespace: str, name: str) -> Mapping[str, Any] | None:
    return kube.get_custom("actions", namespace, name)


def refresh_readiness(trigger: Mapping[str, Any], action_of: ActionLookup = _action_from_api) -> None:
    """Write the Trigger's Ready condition when it changed; a Warning Event when it turns unusable.

    `action_of` finds the Trigger's Action: the operator's handlers pass its index, since every write
    of the Trigger's status (its counts, once a second in a burst) brings this here again."""
    meta, spec = trigger["metadata"], trigger.get("spec") or {}
    readiness = readiness_of(trigger, action_of(meta["namespace"], spec.get("action", "")))
    written = conditions.updated(trigger, READY, readiness, timestamps.render(timestamps.now()))
    if written is None:
        return
    kube.patch_custom_status("triggers", meta["namespace"], meta["name"], {"conditions": written})
    before = conditions.find((trigger.get("status") or {}).get("conditions"), READY) or {}
    if (
        readiness[1] in ("InvalidGlob", "InvalidSelector", templates.INVALID_PARAMETERS)
        and before.get("reason") != readiness[1]
    ):
        events.post(trigger, "TriggerUnusable", readiness[2], warning=True)


def fired_run(invocation: Mapping[str, Any]) -> tuple[tuple[str, str], str, tuple[str, str]] | None:
    """An Invocation's entry in its Trigger's history (`history_status`): ((namespace, trigger), name,
    (creationTimestamp, name)); None for a run no Trigger fired (a manual run)."""
    meta, trigger = invocation["metadata"], (invocation.get("spec") or {}).get("trigger")
    if not trigger:
        return None
    return (meta["namespace"], trigger), meta["name"], (meta.get("creationTimestamp", ""), meta["name"])


def history_status(runs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The Trigger status fields that sum up its Invocations, given as (creationTimestamp, name) pairs:
    how many exist (`fired`), and the newest one and when it was made. Derived from the Invocations
    themselves, so retention's pruning lowers `fired` and no crash can leave it wrong."""
    found = list(runs)
    if not found:
        return {"fired": 0, "lastFiredAt": None, "lastInvocation": None}
    created, name = max(found)  # RFC 3339 in UTC sorts as text
    return {"fired": len(found), "lastFiredAt": created, "lastInvocation": name}


# Each Trigger's retention policy as its watch last showed it (None: it has none), so that the end of
# every run does not read its Trigger only to learn that there is nothing to prune.
_policies: dict[tuple[str, str], Mapping[str, Any] | None] = {}


def needs_backfill(trigger: Mapping[str, Any]) -> bool:
    """`spec.backfill` asks to catch up, the Trigger can fire, and this generation of its spec (its
    creation, or a resume from suspend) has not caught up yet."""
    spec, current = trigger.get("spec") or {}, trigger.get("status") or {}
    return (
        bool(spec.get("backfill"))
        and not spec.get("suspend")
        and firing.unusable(trigger) is None
        and current.get("backfilledGeneration") != trigger["metadata"].get("generation")
    )


def backfill(trigger: Mapping[str, Any], record_labels: Callable[[str], Mapping[str, str] | None]) -> int:
    """Fire the Trigger once on the files already in the Records it selects (`record_labels(record)`:
    a Record's labels, None when it is gone), then note the generation done. The Invocations have the
    names a dispatch gives them, so a file that already ran is not run again. How many were created."""
    meta = trigger["metadata"]
    created = 0
    for page in kube.pages_of_custom(files.PLURAL, meta["namespace"]):
        for file in page:
            labels_of_record = record_labels(file["spec"]["record"])
            if labels_of_record is None:
                continue
            for invocation in firing.invocations_due(file, labels_of_record, [trigger]):
                created += kube.create_custom("invocations", invocation)
    generation = meta.get("generation")

    def noted(current: dict[str, Any]) -> dict[str, Any] | None:
        status = current.get("status") or {}
        return (
            None
            if status.get("backfilledGeneration") == generation
            else {**status, "backfilledGeneration": generation}
        )

    # A compare-and-swap: when the handler and the periodic pass both catch up on one generation (the
    # pass listed the Trigger before the first noted it), only the first to note it says so.
    if kube.update_status("triggers", meta["namespace"], meta["name"], noted) is not None:
        how_many = "1 file" if created == 1 else f"{created} files"
        events.post(trigger, "Backfilled", f"fired on {how_many} already in its Records")
    return created


def remember(trigger: Mapping[str, Any]) -> None:
    meta = trigger["metadata"]
    _policies[meta["namespace"], meta["name"]] = (trigger.get("spec") or {}).get("retention") or None


def forget(namespace: str, name: str) -> None:
    _policies.pop((namespace, name), None)


def apply_retention(namespace: str, trigger: str) -> list[str]:
    """Delete the Trigger's finished Invocations beyond its retention policy; the names deleted."""
    if (namespace, trigger) in _policies:
        policy = _policies[namespace, trigger]
    else:
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
