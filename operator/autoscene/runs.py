"""Runs made and steered by hand: manual Invocations, re-runs, cancellation requests. Pure: no I/O."""

import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from . import API_VERSION, labels, naming

RERUN_OF = "autoscene.io/rerun-of"  # annotation: the Invocation a re-run repeats
CANCEL = "autoscene.io/cancel"  # annotation a user sets (to "true") to cancel a run


def parse_parameters(pairs: Iterable[str]) -> dict[str, str]:
    """`key=value` strings as a dict; ValueError naming a pair without `=` or with an empty key."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sign, value = pair.partition("=")
        if not sign or not key.strip():
            raise ValueError(f"a parameter is KEY=VALUE, not {pair!r}")
        found[key.strip()] = value
    return found


def manual_run(
    namespace: str, action: str, record: str, file: str, parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A manual Invocation of `action` on `file` of `record`: named after both, with a random suffix
    (each manual run is a run of its own)."""
    stem = file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    name = naming.fitted(naming.dns_label(f"{action}-{stem}"), 57).strip("-") + f"-{secrets.token_hex(2)}"
    spec: dict[str, Any] = {"action": action, "record": record, "file": file}
    if parameters:
        spec["parameters"] = dict(parameters)
    return {
        "apiVersion": API_VERSION,
        "kind": "Invocation",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels.for_invocation(action=action, record=record, trigger=None),
        },
        "spec": spec,
    }


def rerun_of(invocation: Mapping[str, Any]) -> dict[str, Any]:
    """A new run with the inputs of `invocation` (Action, Record, file, content, parameters, chain), linked to
    it by the `autoscene.io/rerun-of` annotation; a manual run (no Trigger), whoever made the first."""
    meta, spec = invocation["metadata"], invocation["spec"]
    again = manual_run(
        meta["namespace"], spec["action"], spec["record"], spec["file"], spec.get("parameters")
    )
    for carried in ("sha256", "chain"):
        if spec.get(carried):
            again["spec"][carried] = spec[carried]
    again["metadata"]["annotations"] = {RERUN_OF: meta["name"]}
    return again


def cancel_requested(invocation: Mapping[str, Any]) -> bool:
    return (invocation["metadata"].get("annotations") or {}).get(CANCEL) == "true"


def matching(invocations: Iterable[Mapping[str, Any]], phase: str | None = None) -> list[Mapping[str, Any]]:
    """The Invocations in `phase` (any when None; compared without regard to case)."""
    wanted = phase.lower() if phase else None
    return [
        inv
        for inv in invocations
        if wanted is None or (inv.get("status") or {}).get("phase", "").lower() == wanted
    ]
