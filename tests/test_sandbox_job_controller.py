"""The sandbox's Job controller: its work queue, against client-go's workqueue guarantees
(k8s.io/client-go/util/workqueue: a key waits once however often it is added, is handed to one worker
at a time, and comes back once more if it was added while being processed), and what a relisting
tells it."""

import threading
import time

from autoscene.sandbox.workqueue import WorkQueue


def test_a_key_added_many_times_waits_once_and_keys_come_in_order() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    handed = []
    for _ in range(3):
        key = queue.get()
        assert key is not None
        handed.append(key)
        queue.done(key)
    assert handed == ["a", "b", "c"]


def test_a_key_added_while_processed_comes_back_once_after_done_never_to_two_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get() == "a"
    queue.add("a")
    queue.add("a")
    taken: list[str | None] = []
    other = threading.Thread(target=lambda: taken.append(queue.get()))
    other.start()
    time.sleep(0.2)
    assert taken == []  # "a" is being processed: no other worker gets it meanwhile
    queue.done("a")
    other.join(timeout=5)
    assert taken == ["a"]
    queue.done("a")
    queue.add("b")
    assert queue.get() == "b"  # "a" was handed back once, not twice


def test_workers_process_different_keys_side_by_side_and_end_at_shut_down() -> None:
    queue: WorkQueue[int] = WorkQueue()
    running, most, lock = set(), 0, threading.Lock()

    def work() -> None:
        nonlocal most
        while (key := queue.get()) is not None:
            with lock:
                assert key not in running
                running.add(key)
                most = max(most, len(running))
            time.sleep(0.01)
            with lock:
                running.discard(key)
            queue.done(key)

    workers = [threading.Thread(target=work) for _ in range(5)]
    for worker in workers:
        worker.start()
    for round_ in range(3):
        for key in range(20):
            queue.add(key)
        time.sleep(0.05 * round_)
    time.sleep(0.3)
    queue.shut_down()
    for worker in workers:
        worker.join(timeout=5)
    assert not any(worker.is_alive() for worker in workers)
    assert most > 1


def test_after_a_relisting_the_job_controller_forgets_what_went_in_the_gap() -> None:
    """Objects deleted while the watch was down send no DELETED event: the full listing that follows
    tells them (as client-go's reflector replaces its store). A Pod being created (no
    resourceVersion yet) may postdate the listing and is kept."""
    from kubernetes import client

    from autoscene.sandbox.jobcontroller import JobState, LocalJobController

    controller = LocalJobController(client.ApiClient())
    scheduled: list[str] = []
    controller._sync_soon = scheduled.append  # type: ignore[method-assign,assignment]

    def pod(name: str, version: str | None) -> dict[str, object]:
        meta: dict[str, object] = {"name": name, "namespace": "ns"}
        if version:
            meta["resourceVersion"] = version
        return {"metadata": meta, "status": {"phase": "Running"}}

    running = JobState({"metadata": {"name": "a", "namespace": "ns", "uid": "ua"}, "spec": {}})
    running.pods = {"a-gone": pod("a-gone", "7"), "a-kept": pod("a-kept", "8"), "a-new": pod("a-new", None)}
    controller._jobs = {
        "ua": running,
        "ub": JobState({"metadata": {"name": "b", "namespace": "ns", "uid": "ub"}}),
    }
    controller._forget_jobs_not_listed([("ns", "a", "ua")])
    assert list(controller._jobs) == ["ua"]
    controller._forget_pods_not_listed([("ns", "a-kept", "p2")])
    assert sorted(running.pods) == ["a-kept", "a-new"]
    assert list(running.deleted) == ["a-gone"]
    assert scheduled == ["ua"]
