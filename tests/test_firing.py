from typing import Any

from autoscene.firing import invocations_due, mark_dispatched, unusable_triggers
from autoscene.naming import invocation_name

SHA = "c" * 64


def trigger(name: str, glob: str, created: str = "2026-01-01T10:00:00Z", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "lab", "creationTimestamp": created},
        "spec": {"action": "extract-images", "fileGlob": glob, **spec},
    }


def record(*files: tuple[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "recordings", "namespace": "lab", "labels": labels or {}},
        "status": {
            "files": [{"path": path, "sha256": SHA, "size": 1, "addedAt": added} for path, added in files]
        },
    }


def test_matching_file_makes_one_named_invocation() -> None:
    due = invocations_due(record(("cam/clip.mp4", "2026-01-01T10:00:05.25Z")), [trigger("auto", "*.mp4")])
    assert len(due) == 1
    invocation = due[0]
    assert invocation["metadata"]["name"] == invocation_name("auto", "recordings", "cam/clip.mp4", SHA)
    assert invocation["metadata"]["namespace"] == "lab"
    assert invocation["spec"] == {
        "action": "extract-images",
        "record": "recordings",
        "file": "cam/clip.mp4",
        "sha256": SHA,
        "trigger": "auto",
    }
    assert invocation["metadata"]["labels"]["autoscene.io/trigger"] == "auto"


def test_non_matching_file_fires_nothing() -> None:
    assert invocations_due(record(("notes.txt", "2026-01-01T10:00:05Z")), [trigger("auto", "*.mp4")]) == []


def test_an_unusable_trigger_is_named_and_does_not_hold_up_the_others() -> None:
    files = record(("a.mp4", "2026-01-01T10:00:05Z"))
    broken_glob = trigger("typo", "[abc")
    broken_selector = trigger(
        "empty-in",
        "*.mp4",
        recordSelector={"matchExpressions": [{"key": "site", "operator": "In", "values": []}]},
    )
    triggers = [broken_glob, broken_selector, trigger("fine", "*.mp4")]
    assert [due["spec"]["trigger"] for due in invocations_due(files, triggers)] == ["fine"]
    assert set(unusable_triggers(triggers)) == {"typo", "empty-in"}
    assert "unclosed character class" in unusable_triggers(triggers)["typo"]


def test_suspended_and_unselected_triggers_do_not_fire() -> None:
    files = record(("a.mp4", "2026-01-01T10:00:05Z"), labels={"site": "lab"})
    triggers = [
        trigger("paused", "*.mp4", suspend=True),
        trigger("elsewhere", "*.mp4", recordSelector={"matchLabels": {"site": "field"}}),
        trigger("here", "*.mp4", recordSelector={"matchLabels": {"site": "lab"}}),
    ]
    assert [due["spec"]["trigger"] for due in invocations_due(files, triggers)] == ["here"]


def test_every_matching_trigger_fires_once_per_file() -> None:
    files = record(("a.mp4", "2026-01-01T10:00:05Z"), ("b.mp4", "2026-01-01T10:00:06Z"))
    due = invocations_due(files, [trigger("one", "*.mp4"), trigger("two", "a.*")])
    assert sorted((d["spec"]["trigger"], d["spec"]["file"]) for d in due) == [
        ("one", "a.mp4"),
        ("one", "b.mp4"),
        ("two", "a.mp4"),
    ]
    assert len({d["metadata"]["name"] for d in due}) == 3


def test_dispatched_files_never_fire_again() -> None:
    files = record(("a.mp4", "2026-01-01T10:00:05Z"), ("b.mp4", "2026-01-01T10:00:06Z"))
    files["status"]["files"][0]["dispatchedAt"] = "2026-01-01T10:00:07Z"
    assert [d["spec"]["file"] for d in invocations_due(files, [trigger("auto", "*.mp4")])] == ["b.mp4"]


def test_marking_dispatched_touches_only_the_same_content() -> None:
    dispatched = [{"path": "a.mp4", "sha256": SHA}]
    current = {"fileCount": 2, "files": [{"path": "a.mp4", "sha256": SHA}, {"path": "b.mp4", "sha256": SHA}]}
    replaced = {"files": [{"path": "a.mp4", "sha256": "d" * 64}]}  # new content arrived meanwhile
    assert mark_dispatched(current, dispatched, "T") == {
        "fileCount": 2,
        "files": [{"path": "a.mp4", "sha256": SHA, "dispatchedAt": "T"}, {"path": "b.mp4", "sha256": SHA}],
    }
    assert mark_dispatched(replaced, dispatched, "T") == replaced
