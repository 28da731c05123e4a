"""The kopf handlers' own logic, apart from the API: what they read of kopf's indexes, and when."""

from typing import Any

import pytest

from autoscene import handlers, invocations


def test_a_lookup_holds_what_the_indexes_held_when_it_was_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Made on kopf's event loop, used on a worker thread: the indexes may change meanwhile (a thread
    iterating one as it changes fails), so the lookup reads them once, up front."""
    action = {"metadata": {"name": "extract"}, "spec": {"image": "x"}}
    record = {"metadata": {"name": "rec"}, "status": {"claimName": "c"}}
    indexes: dict[str, Any] = {
        "known_actions": {("ns", "extract"): [action]},
        "known_records": {("ns", "rec"): [record]},
    }
    asked: list[tuple[str, str, str]] = []

    class Api:
        def action(self, namespace: str, name: str) -> None:
            asked.append(("action", namespace, name))

        def record(self, namespace: str, name: str) -> None:
            asked.append(("record", namespace, name))

    monkeypatch.setattr(invocations, "FROM_API", Api())
    lookup = handlers.IndexLookup(indexes, "ns", actions=["extract"], records=["rec"])
    indexes["known_actions"].clear()  # as kopf's loop may change them while a thread works
    indexes["known_records"].clear()
    assert lookup.action("ns", "extract") is action and lookup.record("ns", "rec") is record
    assert asked == []
    # Not in the index when it was made (or another namespace): asked of the API, not taken as missing.
    assert lookup.action("ns", "other") is None and lookup.action("elsewhere", "extract") is None
    assert asked == [("action", "ns", "other"), ("action", "elsewhere", "extract")]
