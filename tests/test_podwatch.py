"""The operator's caches of what it would otherwise ask the API server per event: the Pods of its Jobs
(`podwatch`, read through `invocations.job_pods`, and telling when a run's Pod waits in trouble) and
the Event spam filter (`events.SpamFilter`)."""

import threading
from typing import Any

import pytest

from autoscene import events, invocations, kube, podwatch


def pod(name: str, job: str, phase: str, created: str, namespace: str = "ns") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "labels": {"batch.kubernetes.io/job-name": job, "job-name": job},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"containers": [{"name": "action", "image": "busybox"}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "action", "state": {}}]},
    }


def test_a_jobs_pods_are_known_only_once_the_first_listing_is_in() -> None:
    watched = podwatch.PodWatch()
    watched._seen(pod("run-a-x1", "run-a", "Running", "2026-01-01T00:00:00Z"))
    assert watched.pods_of("ns", "run-a") is None  # not listed yet: the caller lists
    watched._forget_all_but(None, [("ns", "run-a-x1", "u1")])
    (known,) = watched.pods_of("ns", "run-a") or []
    assert known["metadata"] == {
        "name": "run-a-x1",
        "namespace": "ns",
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    assert known["status"]["phase"] == "Running"
    assert watched.pods_of("ns", "run-b") == []


def test_a_pod_deleted_or_missing_from_a_relisting_is_forgotten() -> None:
    watched = podwatch.PodWatch()
    for name, job in (("a-1", "a"), ("a-2", "a"), ("b-1", "b")):
        watched._seen(pod(name, job, "Succeeded", "2026-01-01T00:00:00Z"))
    watched._forget_all_but(None, [("ns", "a-1", ""), ("ns", "a-2", ""), ("ns", "b-1", "")])
    watched._gone(pod("a-1", "a", "Succeeded", ""))
    assert [p["metadata"]["name"] for p in watched.pods_of("ns", "a") or []] == ["a-2"]
    watched._forget_all_but(None, [("ns", "a-2", "")])  # b-1 went while the watch was down
    assert watched.pods_of("ns", "b") == []


def test_an_ended_job_waits_for_its_pods_end_else_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Job's watch may deliver its end before the Pod's watch delivers the Pod's: then the cache's
    Pod is not final, and the Pods are listed instead."""
    watched = podwatch.PodWatch()
    watched._seen(pod("run-a-x1", "run-a", "Running", "2026-01-01T00:00:00Z"))
    watched._forget_all_but(None, [("ns", "run-a-x1", "")])
    monkeypatch.setattr(podwatch, "PODS", watched)
    listed: list[str] = []

    class Core:
        def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
            listed.append(label_selector)
            final = pod("run-a-x1", "run-a", "Succeeded", "2026-01-01T00:00:00Z")
            return type("PodList", (), {"items": [final]})()

    monkeypatch.setattr(kube, "core", Core)
    monkeypatch.setattr(kube, "sanitized", lambda body: body)
    assert invocations.job_pods("ns", "run-a")[0]["status"]["phase"] == "Running"  # still on: cache
    assert listed == []
    assert invocations.job_pods("ns", "run-a", ended=True)[0]["status"]["phase"] == "Succeeded"
    assert listed == ["job-name=run-a"]
    watched._seen(pod("run-a-x1", "run-a", "Succeeded", "2026-01-01T00:00:00Z"))
    assert invocations.job_pods("ns", "run-a", ended=True)[0]["status"]["phase"] == "Succeeded"
    assert listed == ["job-name=run-a"]  # the cache has the end now: no second listing


def waiting(name: str, job: str, reason: str, message: str = "") -> dict[str, Any]:
    waiting_pod = pod(name, job, "Pending", "2026-01-01T00:00:00Z")
    state = {"waiting": {"reason": reason, "message": message}}
    waiting_pod["status"]["containerStatuses"] = [{"name": "action", "state": state}]
    return waiting_pod


def test_a_pod_that_starts_waiting_in_trouble_is_told_once_per_reason() -> None:
    """The Job controller writes nothing while its Pod waits: the Pod's own change must be told. A
    container on its way to run (the kubelet's ContainerCreating) is no trouble."""
    told: list[podwatch.JobKey] = []
    watched = podwatch.PodWatch()
    watched._on_trouble = told.append
    watched._seen(waiting("run-a-x1", "run-a", "ContainerCreating"))
    assert told == []
    watched._seen(waiting("run-a-x1", "run-a", "CreateContainerConfigError", 'secret "api" not found'))
    watched._seen(waiting("run-a-x1", "run-a", "CreateContainerConfigError", 'secret "api" not found'))
    assert told == [("ns", "run-a")]  # the same trouble again is not news
    watched._seen(waiting("run-a-x1", "run-a", "ImagePullBackOff", "Back-off pulling image"))
    assert told == [("ns", "run-a")] * 2
    watched._seen(pod("run-a-x1", "run-a", "Running", "2026-01-01T00:00:00Z"))
    assert told == [("ns", "run-a")] * 2  # running again: the Job's own events say so


def test_events_about_one_object_pass_in_a_burst_of_25_then_one_every_5_minutes() -> None:
    """client-go's defaults (tools/record/events_cache.go: defaultSpamBurst 25, defaultSpamQPS 1/300)."""
    spam = events.SpamFilter()
    record = ("Record", "ns", "recordings", "uid-1", "Normal", "TriggerFired")
    assert [spam.allows(record, now=0.0) for _ in range(26)] == [True] * 25 + [False]
    assert spam.allows(("Record", "ns", "other", "uid-2", "Normal", "TriggerFired"), now=0.0)
    assert not spam.allows(record, now=299.0)
    assert spam.allows(record, now=301.0)
    assert not spam.allows(record, now=302.0)
    assert [spam.allows(record, now=3_700.0) for _ in range(12)] == [True] * 11 + [False]


def test_the_spam_filter_keeps_buckets_for_the_newest_keys_only() -> None:
    spam = events.SpamFilter(burst=1, capacity=2)
    assert spam.allows(("a",), now=0.0) and spam.allows(("b",), now=0.0) and spam.allows(("c",), now=0.0)
    assert not spam.allows(("c",), now=0.0)
    assert spam.allows(("a",), now=0.0)  # its bucket was dropped for newer keys: a full one again


def test_a_new_start_stops_the_readers_of_the_last_one_and_forgets_what_they_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator restarted in the same process (or a lead won again) starts the watch anew: the
    readers of the earlier start must end, not go on beside the new ones."""
    flags: list[tuple[str | None, Any]] = []
    monkeypatch.setattr(
        podwatch.PodWatch, "_follow", lambda self, scope, stopped: flags.append((scope, stopped))
    )
    watched = podwatch.PodWatch()
    watched.start(["a", "b"])
    watched._seen(pod("run-a-x1", "run-a", "Running", "2026-01-01T00:00:00Z", namespace="a"))
    watched._forget_all_but("a", [("a", "run-a-x1", "")])
    watched.start([])
    for _ in range(100):  # the readers are threads: wait for the third to have begun
        if len(flags) == 3:
            break
        threading.Event().wait(0.01)
    earlier = [stopped for scope, stopped in flags if scope in ("a", "b")]
    (latest,) = [stopped for scope, stopped in flags if scope is None]
    assert len(earlier) == 2 and all(stopped.is_set() for stopped in earlier)
    assert not latest.is_set()
    assert watched.pods_of("a", "run-a") is None  # nothing known until the new listing is in
