"""`jobwatch`: the operator's Jobs followed by one list and watch with a server-side label selector, and
each Job's changes handed over one at a time, the newest only."""

import asyncio
from pathlib import Path
from typing import Any

from autoscene import jobwatch, kube, labels
from autoscene.sandbox.session import Sandbox


def job(name: str, generation: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "generation": generation}}


def test_a_jobs_changes_are_handed_over_one_at_a_time_and_only_the_newest_waits() -> None:
    async def scenario() -> None:
        handed: list[tuple[str, int, bool]] = []
        running: set[str] = set()
        overlapped: list[str] = []
        release = asyncio.Event()

        async def on_change(body: dict[str, Any], deleted: bool) -> None:
            name = body["metadata"]["name"]
            if name in running:
                overlapped.append(name)
            running.add(name)
            handed.append((name, body["metadata"]["generation"], deleted))
            if name == "a":
                await release.wait()
            running.discard(name)

        latest = jobwatch.Latest(on_change)
        latest.put(("ns", "a"), job("a", 1), False)
        await asyncio.sleep(0)  # a's first call starts and waits
        for generation in (2, 3, 4):
            latest.put(("ns", "a"), job("a", generation), False)
        latest.put(("ns", "a"), job("a", 5), True)
        latest.put(("ns", "b"), job("b", 1), False)  # another Job does not wait for a
        await asyncio.sleep(0.01)
        assert handed == [("a", 1, False), ("b", 1, False)]
        assert latest.busy == 1
        release.set()
        while latest.busy:
            await asyncio.sleep(0.01)
        # 2, 3 and 4 were replaced while a's first call ran: the next call reads the newest state.
        assert handed == [("a", 1, False), ("b", 1, False), ("a", 5, True)]
        assert overlapped == []

    asyncio.run(scenario())


def test_a_failed_call_is_logged_and_the_next_state_still_comes() -> None:
    async def scenario() -> list[int]:
        handed: list[int] = []

        async def on_change(body: dict[str, Any], deleted: bool) -> None:
            handed.append(body["metadata"]["generation"])
            if len(handed) == 1:
                latest.put(("ns", "a"), job("a", 2), False)
                raise RuntimeError("the API said 503")

        latest = jobwatch.Latest(on_change)
        latest.put(("ns", "a"), job("a", 1), False)
        while latest.busy:
            await asyncio.sleep(0.01)
        return handed

    assert asyncio.run(scenario()) == [1, 2]


def suspended_job(name: str, job_labels: dict[str, str]) -> dict[str, Any]:
    """A Job the controller leaves alone (suspended: no Pods)."""
    return {
        "metadata": {"name": name, "labels": job_labels},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            },
        },
    }


def test_only_the_operators_jobs_are_followed_and_a_deleted_one_is_told(tmp_path: Path) -> None:
    """The label selector goes to the API server: a Job of someone else's never reaches the operator,
    and one of its own relabelled is not taken for deleted."""
    previous = kube._api_client  # the session's other fixtures keep using theirs
    with Sandbox(tmp_path / "sandbox", with_operator=False) as sandbox:
        batch = kube.batch()
        ours = {labels.MANAGED_BY: labels.MANAGER}
        batch.create_namespaced_job(sandbox.namespace, suspended_job("listed", ours))
        batch.create_namespaced_job(sandbox.namespace, suspended_job("theirs", {"app": "other"}))

        async def scenario() -> list[tuple[str, bool]]:
            seen: list[tuple[str, bool]] = []

            async def on_change(body: dict[str, Any], deleted: bool) -> None:
                seen.append((body["metadata"]["name"], deleted))

            async def until(expected: list[tuple[str, bool]]) -> None:
                for _ in range(600):
                    if all(item in seen for item in expected):
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"saw {seen}, waited for {expected}")

            watch = jobwatch.JobWatch()
            watch.start([sandbox.namespace], on_change)
            try:
                await until([("listed", False)])
                await asyncio.to_thread(
                    batch.create_namespaced_job, sandbox.namespace, suspended_job("watched", ours)
                )
                await until([("watched", False)])
                await asyncio.to_thread(batch.delete_namespaced_job, "watched", sandbox.namespace)
                await until([("watched", True)])
                # Relabelled, a Job leaves the selection with a DELETED event: it still exists.
                relabel = {"metadata": {"labels": {labels.MANAGED_BY: "someone-else"}}}
                await asyncio.to_thread(batch.patch_namespaced_job, "listed", sandbox.namespace, relabel)
                for _ in range(600):
                    if seen.count(("listed", False)) == 2:
                        break
                    await asyncio.sleep(0.05)
            finally:
                watch.stop()
            return seen

        try:
            seen = asyncio.run(scenario())
        finally:
            kube._api_client = previous
    assert "theirs" not in {name for name, _ in seen}
    assert seen.count(("listed", False)) == 2 and ("listed", True) not in seen
