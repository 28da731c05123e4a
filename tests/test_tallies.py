"""Counts written into a status from an index (`tallies.Tally`): one write per burst, none after stop."""

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from autoscene import kube, tallies


def count(entries: Iterable[Any]) -> dict[str, Any]:
    return {"count": len(list(entries))}


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, dict[str, Any]]]:
    made: list[tuple[str, str, str, dict[str, Any]]] = []
    monkeypatch.setattr(kube, "patch_custom_status", lambda *call: made.append(call))
    return made


def test_a_burst_of_changes_makes_one_write_of_the_last_count(writes: list[Any]) -> None:
    async def burst() -> None:
        tally = tallies.Tally("records", count, delay=0.05)
        index: dict[tuple[str, str], list[int]] = {("ns", "r"): []}
        for n in range(5):
            index[("ns", "r")].append(n)
            tally.changed(("ns", "r"), index)
        await asyncio.sleep(0.3)
        tally.changed(("ns", "r"), index)  # nothing new: not written again
        await asyncio.sleep(0.3)

    asyncio.run(burst())
    assert writes == [("records", "ns", "r", {"count": 5})]


def test_a_stopped_tally_drops_its_pending_writes_and_leaves_no_error(
    writes: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's loop shuts its thread pool down after cleanup: a write started then would fail
    with "Executor shutdown has been called" in a task nobody awaits."""

    async def stopped_before_the_write() -> None:
        tally = tallies.Tally("records", count, delay=0.05)
        tally.changed(("ns", "r"), {("ns", "r"): [1]})
        tally.stop()
        await asyncio.sleep(0.2)
        tally.changed(("ns", "r"), {("ns", "r"): [1, 2]})  # after stop: ignored
        await asyncio.sleep(0.2)

    asyncio.run(stopped_before_the_write())
    assert writes == []
    assert "exception was never retrieved" not in caplog.text


def test_the_operator_stops_its_tallies_on_its_event_loop() -> None:
    """kopf runs a sync cleanup handler on a thread; a loop's timers and tasks are for the loop's own
    thread to cancel, so the handler that stops the tallies is a coroutine (kopf runs those on the loop)."""
    from autoscene import handlers

    assert asyncio.iscoroutinefunction(handlers.stop_tallies)


def test_entries_follow_puts_and_drops_by_key_and_forget_an_emptied_key() -> None:
    entries = tallies.Entries()
    assert entries.put(("ns", "t"), "a", 1) == ("ns", "t")
    entries.put(("ns", "t"), "b", 2)
    entries.put(("ns", "t"), "a", 3)  # a change of a counted object replaces its entry
    entries.put(("other", "t"), "a", 4)
    assert sorted(entries[("ns", "t")]) == [2, 3] and len(entries) == 2
    assert entries.drop(("ns", "t"), "missing") == ("ns", "t")  # a deletion seen twice is harmless
    entries.drop(("ns", "t"), "a")
    entries.drop(("ns", "t"), "b")
    assert ("ns", "t") not in entries and list(entries) == [("other", "t")]
    assert entries.get(("ns", "t"), ()) == ()  # what `Tally` reads for a key with nothing counted
