from typing import Any

from autoscene import files, naming, triggers
from autoscene.firing import invocations_due, unusable
from autoscene.naming import invocation_name

SHA = "c" * 64
RECORD = {
    "apiVersion": "autoscene.io/v1alpha1",
    "kind": "Record",
    "metadata": {"name": "recordings", "namespace": "lab", "uid": "u-1"},
}


def trigger(name: str, glob: str, created: str = "2026-01-01T10:00:00Z", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "lab", "creationTimestamp": created},
        "spec": {"action": "extract-images", "fileGlob": glob, **spec},
    }


def file(path: str, added: str = "2026-01-01T10:00:05Z", sha256: str = SHA) -> dict[str, Any]:
    """A RecordFile as the API server holds it once registered: with its uid and generation."""
    body = files.body(RECORD, path, 1, sha256, added)
    body["metadata"].update(uid=f"uid-of-{path}", generation=1)
    return body


def fired(
    paths: list[str], triggers: list[dict[str, Any]], labels: dict[str, str] | None = None
) -> list[Any]:
    return [due for path in paths for due in invocations_due(file(path), labels or {}, triggers)]


def test_matching_file_makes_one_named_invocation() -> None:
    due = invocations_due(file("cam/clip.mp4", "2026-01-01T10:00:05.25Z"), {}, [trigger("auto", "*.mp4")])
    assert len(due) == 1
    invocation = due[0]
    expected = invocation_name("auto", "recordings", "cam/clip.mp4", SHA, "uid-of-cam/clip.mp4/1")
    assert invocation["metadata"]["name"] == expected
    assert invocation["metadata"]["namespace"] == "lab"
    assert invocation["spec"] == {
        "action": "extract-images",
        "record": "recordings",
        "file": "cam/clip.mp4",
        "sha256": SHA,
        "trigger": "auto",
    }
    assert invocation["metadata"]["labels"]["autoscene.io/trigger"] == "auto"
    assert invocation["metadata"]["annotations"]["autoscene.io/file-added-at"] == "2026-01-01T10:00:05.25Z"


def test_non_matching_file_fires_nothing() -> None:
    assert fired(["notes.txt"], [trigger("auto", "*.mp4")]) == []


def test_an_unusable_trigger_is_named_and_does_not_hold_up_the_others() -> None:
    broken_glob = trigger("typo", "[abc")
    broken_selector = trigger(
        "empty-in",
        "*.mp4",
        recordSelector={"matchExpressions": [{"key": "site", "operator": "In", "values": []}]},
    )
    triggers = [broken_glob, broken_selector, trigger("fine", "*.mp4")]
    assert [due["spec"]["trigger"] for due in fired(["a.mp4"], triggers)] == ["fine"]
    assert [(unusable(t) or ("",))[0] for t in triggers] == ["InvalidGlob", "InvalidSelector", ""]
    assert "unclosed character class" in (unusable(broken_glob) or ("", ""))[1]


def test_suspended_and_unselected_triggers_do_not_fire() -> None:
    triggers = [
        trigger("paused", "*.mp4", suspend=True),
        trigger("elsewhere", "*.mp4", recordSelector={"matchLabels": {"site": "field"}}),
        trigger("here", "*.mp4", recordSelector={"matchLabels": {"site": "lab"}}),
    ]
    assert [due["spec"]["trigger"] for due in fired(["a.mp4"], triggers, {"site": "lab"})] == ["here"]


def test_every_matching_trigger_fires_once_per_file() -> None:
    due = fired(["a.mp4", "b.mp4"], [trigger("one", "*.mp4"), trigger("two", "a.*")])
    assert sorted((d["spec"]["trigger"], d["spec"]["file"]) for d in due) == [
        ("one", "a.mp4"),
        ("one", "b.mp4"),
        ("two", "a.mp4"),
    ]
    assert len({d["metadata"]["name"] for d in due}) == 3


def test_each_content_is_dispatched_once() -> None:
    registered = file("a.mp4")
    assert files.needs_dispatch(registered)
    registered["status"] = {"dispatchedSha256": SHA}
    assert not files.needs_dispatch(registered)
    changed = {**registered, "spec": {**registered["spec"], "sha256": "d" * 64}}
    assert files.needs_dispatch(changed)  # new content at the path is dispatched again


def test_the_same_content_again_is_no_change_and_new_content_is() -> None:
    existing = file("a.mp4", "2026-01-01T10:00:05Z")
    assert files.content_changed(existing, file("a.mp4", "2026-02-02T00:00:00Z")) is None
    assert files.content_changed(existing, file("a.mp4", "2026-02-02T00:00:00Z", "d" * 64)) == {
        "size": 1,
        "sha256": "d" * 64,
        "addedAt": "2026-02-02T00:00:00Z",
        "source": None,  # an upload over a run's output drops the output's provenance
    }


def test_a_file_object_is_named_from_record_and_path_and_owned_by_the_record() -> None:
    body = file("day1/Cam 0.mp4")
    assert body["metadata"]["name"] == naming.file_name("recordings", "day1/Cam 0.mp4")
    assert body["metadata"]["name"].startswith("recordings-day1-cam-0-mp4-")
    assert body["metadata"]["labels"]["autoscene.io/record"] == "recordings"
    [owner] = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["blockOwnerDeletion"]) == ("Record", "u-1", False)
    # Paths that read alike still get names of their own.
    assert naming.file_name("r", "a b.mp4") != naming.file_name("r", "a-b.mp4")


def test_totals_count_bytes_and_the_newest_registration() -> None:
    totals = files.totals(
        [(10, "2026-01-01T10:00:05Z"), (5, "2026-01-02T00:00:00.5Z"), (1, "2025-12-31T23:59:59Z")]
    )
    assert totals.as_status() == {"fileCount": 3, "bytes": 16, "lastFileAt": "2026-01-02T00:00:00.5Z"}
    assert files.totals([]).as_status() == {"fileCount": 0, "bytes": 0}


def test_a_trigger_whose_parameters_its_action_refuses_is_not_armed() -> None:
    """Its runs would all fail `InvalidParameters` (templates.resolve), so its Ready condition says so
    before the first file arrives; with the Action's own names it is Armed."""
    action = {"spec": {"parameters": [{"name": "fps", "default": "1"}, {"name": "scale", "required": True}]}}
    misspelt = triggers.readiness_of(trigger("t", "*.mp4", parameters={"fsp": "2", "scale": "1"}), action)
    assert misspelt[:2] == ("False", "InvalidParameters")
    assert '"fsp"' in misspelt[2] and "every run this Trigger starts would fail" in misspelt[2]
    unset = triggers.readiness_of(trigger("t", "*.mp4", parameters={"fps": "2"}), action)
    assert unset[:2] == ("False", "InvalidParameters") and '"scale"' in unset[2]
    armed = triggers.readiness_of(trigger("t", "*.mp4", parameters={"fps": "2", "scale": "1"}), action)
    assert armed[:2] == ("True", "Armed")
    assert triggers.readiness_of(trigger("t", "*.mp4"), None)[1] == "ActionNotFound"
