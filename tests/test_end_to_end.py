"""The whole loop through the real path: operator ↔ embedded API ↔ Job runner ↔ extractor ↔ files."""

import json
import time
from pathlib import Path

import cv2
import pytest

from autoscene import GROUP, VERSION, kube
from autoscene.sample_video import make_sample_video

from .conftest import RunningSandbox


def frames_in(video: Path) -> int:
    """Frame count by an independent reader (OpenCV decoding every frame)."""
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    (tmp_path / "inputs").mkdir()
    return make_sample_video(tmp_path / "inputs" / "drive 01.mp4", width=160, height=120, frames=30, fps=15)


def test_upload_makes_a_succeeded_invocation_with_every_frame(sandbox: RunningSandbox, clip: Path) -> None:
    [uploaded] = sandbox.upload("recordings", clip)
    invocation = sandbox.run_of(uploaded.path)
    status = invocation["status"]
    assert status["phase"] == "Succeeded", status
    assert status["exitCode"] == 0
    assert status["startTime"] <= status["completionTime"]
    assert invocation["spec"]["trigger"] == "auto-extract-images"
    assert invocation["spec"]["sha256"] == uploaded.sha256
    frames = sorted((sandbox.outputs_of(invocation) / "drive 01").glob("frame_*.jpg"))
    expected = frames_in(clip)
    assert expected == 30
    assert len(frames) == expected
    assert all(cv2.imread(str(frame)) is not None for frame in frames)
    manifest = json.loads((sandbox.outputs_of(invocation) / "drive 01" / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert status["outputs"]["count"] >= expected
    assert status["outputs"]["bytes"] > 0
    trigger = kube.get_custom("triggers", sandbox.namespace, "auto-extract-images")
    assert trigger is not None and trigger["status"]["fired"] == 1


def test_a_file_not_matching_the_glob_fires_nothing(
    sandbox: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("weather: sunny")
    sandbox.upload("recordings", notes, clip)
    sandbox.run_of(clip.name)  # the .mp4 uploaded with it has been handled, so the .txt was seen too
    assert [inv["spec"]["file"] for inv in sandbox.invocations()] == [clip.name]


def test_the_same_file_uploaded_twice_makes_one_invocation(
    sandbox: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    sandbox.upload("recordings", clip)
    first = sandbox.run_of(clip.name)
    sandbox.upload("recordings", clip)  # same path, same content: registered again
    marker = make_sample_video(tmp_path / "marker.mp4", width=64, height=48, frames=4)
    sandbox.upload("recordings", marker)
    sandbox.run_of(marker.name)
    runs = [inv for inv in sandbox.invocations() if inv["spec"]["file"] == clip.name]
    assert [run["metadata"]["name"] for run in runs] == [first["metadata"]["name"]]
    # New content at the same path is a new run.
    (tmp_path / "changed").mkdir()
    changed = make_sample_video(tmp_path / "changed" / clip.name, width=64, height=48, frames=5, seed=99)
    sandbox.upload("recordings", changed)
    second = sandbox.run_of(clip.name, exclude=frozenset({first["metadata"]["name"]}))
    assert second["status"]["phase"] == "Succeeded"


def test_a_corrupt_video_fails_with_a_message_and_the_next_upload_succeeds(
    sandbox: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    sandbox.upload("recordings", corrupt)
    failed = sandbox.run_of(corrupt.name)
    assert failed["status"]["phase"] == "Failed"
    assert failed["status"]["exitCode"] != 0
    assert "broken.mp4" in failed["status"]["message"]
    assert "Traceback" not in failed["status"]["message"]
    sandbox.upload("recordings", clip)
    assert sandbox.run_of(clip.name)["status"]["phase"] == "Succeeded"


def test_a_manual_invocation_runs(sandbox: RunningSandbox, clip: Path) -> None:
    sandbox.upload("recordings", clip, prefix="manual")
    sandbox.run_of(f"manual/{clip.name}")  # the trigger's own run
    create_invocation(sandbox, "by-hand", action="extract-images", file=f"manual/{clip.name}")
    done = sandbox.finished("by-hand")
    assert done["status"]["phase"] == "Succeeded"
    assert done["metadata"]["labels"]["autoscene.io/action"] == "extract-images"
    assert len(list((sandbox.outputs_of(done) / "manual" / clip.stem).glob("*.jpg"))) == frames_in(clip)


def test_an_invocation_of_a_missing_action_fails_then_recovers(sandbox: RunningSandbox, clip: Path) -> None:
    sandbox.upload("recordings", clip)
    sandbox.run_of(clip.name)
    create_invocation(sandbox, "early", action="extract-later", file=clip.name)
    failed = sandbox.finished("early")
    assert failed["status"]["phase"] == "Failed"
    assert failed["status"]["reason"] == "ActionNotFound"
    assert 'Action "extract-later" does not exist' in failed["status"]["message"]
    action = kube.get_custom("actions", sandbox.namespace, "extract-images")
    assert action is not None
    later = {
        "apiVersion": action["apiVersion"],
        "kind": "Action",
        "metadata": {"name": "extract-later", "namespace": sandbox.namespace},
        "spec": action["spec"],
    }
    kube.create_custom("actions", later)
    deadline = time.monotonic() + 60
    while (current := sandbox.invocation("early")) and current["status"].get("phase") != "Succeeded":
        assert time.monotonic() < deadline, current["status"]
        time.sleep(0.1)


def test_an_invocation_of_a_missing_record_says_why_it_cannot_run(sandbox: RunningSandbox) -> None:
    create_invocation(sandbox, "nowhere", action="extract-images", file="a.mp4", record="no-such-record")
    failed = sandbox.finished("nowhere")
    assert failed["status"]["reason"] == "RecordNotFound"
    assert 'Record "no-such-record" does not exist' in failed["status"]["message"]


def test_a_trigger_created_later_ignores_older_files(
    sandbox: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    sandbox.upload("recordings", clip)
    sandbox.run_of(clip.name)
    time.sleep(1.1)  # trigger creation times have second precision
    trigger = kube.get_custom("triggers", sandbox.namespace, "auto-extract-images")
    assert trigger is not None
    late = {
        "apiVersion": trigger["apiVersion"],
        "kind": "Trigger",
        "metadata": {"name": "late", "namespace": sandbox.namespace},
        "spec": {"action": "extract-images", "fileGlob": "*.mp4"},
    }
    kube.create_custom("triggers", late)
    time.sleep(1.1)
    newer = make_sample_video(tmp_path / "newer.mp4", width=64, height=48, frames=4)
    sandbox.upload("recordings", newer)
    for run in (sandbox.run_of(newer.name, "late"), sandbox.run_of(newer.name, "auto-extract-images")):
        assert run["status"]["phase"] == "Succeeded"
    fired = {(inv["spec"]["trigger"], inv["spec"]["file"]) for inv in sandbox.invocations()}
    assert fired == {
        ("auto-extract-images", clip.name),
        ("auto-extract-images", newer.name),
        ("late", newer.name),
    }


def test_an_operator_restart_creates_no_second_invocation(
    sandbox: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    sandbox.upload("recordings", clip)
    first = sandbox.run_of(clip.name)
    sandbox.sandbox.restart_operator()
    marker = make_sample_video(tmp_path / "after-restart.mp4", width=64, height=48, frames=4)
    sandbox.upload("recordings", marker)
    sandbox.run_of(marker.name)
    assert sorted(
        inv["metadata"]["name"] for inv in sandbox.invocations() if inv["spec"]["file"] == clip.name
    ) == [first["metadata"]["name"]]
    jobs = kube.batch().list_namespaced_job(sandbox.namespace).items
    assert sorted(job.metadata.name for job in jobs).count(first["metadata"]["name"]) == 1


def create_invocation(
    sandbox: RunningSandbox, name: str, *, action: str, file: str, record: str = "recordings"
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Invocation",
        "metadata": {"name": name, "namespace": sandbox.namespace},
        "spec": {"action": action, "record": record, "file": file},
    }
    assert kube.create_custom("invocations", body)
