"""The end-to-end scenarios of tests/test_end_to_end.py, on a real cluster.

Uploads go through `autoscene upload --kubeconfig K -n NS`, the runs are real Jobs, and what they wrote
is read through a reader Pod that mounts the Record's volume. One namespace serves the session, so each
test uploads into a folder of its own and only looks at its own files.
"""

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from e2e_cluster import ACTION, RECORD, REPO, TRIGGER, Cluster, frame_files

from autoscene import kube, labels
from autoscene.sample_video import make_sample_video

# Per test, on top of the per-run timeout: image pulls, scheduling and several runs in a row.
pytestmark = pytest.mark.timeout(1800)


def frames_in(video: Path) -> int:
    """Frame count by an independent reader (OpenCV decoding every frame)."""
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def decodes_as_jpeg(data: bytes) -> bool:
    return (
        data[:2] == b"\xff\xd8" and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    )


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    (tmp_path / "inputs").mkdir()
    return make_sample_video(tmp_path / "inputs" / "drive 01.mp4", width=160, height=120, frames=30, fps=15)


def test_the_manifests_apply_cleanly_on_the_cluster(cluster: Cluster) -> None:
    """What `kubectl apply -k` would do with manifests/ and the samples, checked by the real API server
    (a server-side dry run: nothing changes)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    # The samples go to a namespace of their own: the test namespace holds the suite's variant of them
    # (a Record on the suite's claim), and applying over objects kubectl did not create merges the two.
    scratch = f"{cluster.namespace}-samples"
    kube.core().create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": scratch}})
    try:
        for folder, namespace in (("manifests", []), ("manifests/samples", ["--namespace", scratch])):
            check_dry_run(kubectl, cluster, folder, namespace)
    finally:
        kube.core().delete_namespace(scratch)


def check_dry_run(kubectl: str, cluster: Cluster, folder: str, namespace: list[str]) -> None:
    done = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            cluster.settings.kubeconfig,
            "apply",
            "--dry-run=server",
            "-k",
            folder,
            *namespace,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl apply -k {folder}:\n{done.stdout}{done.stderr}"


def test_upload_makes_a_succeeded_invocation_with_every_frame(cluster: Cluster, clip: Path) -> None:
    fired = cluster.trigger_fired()
    [uploaded] = cluster.upload(RECORD, clip, prefix="every-frame")
    invocation = cluster.run_of(uploaded.path)
    status = invocation["status"]
    assert status["phase"] == "Succeeded", status
    assert status["exitCode"] == 0
    assert status["startTime"] <= status["completionTime"]
    assert invocation["spec"]["trigger"] == TRIGGER
    assert invocation["spec"]["sha256"] == uploaded.sha256
    expected = frames_in(clip)
    assert expected == 30
    folder = "every-frame/drive 01"
    manifest = json.loads(cluster.read_output(invocation, f"{folder}/manifest.json"))
    assert manifest["complete"] is True
    assert manifest["frameCount"] == len(manifest["frames"]) == expected
    files = cluster.output_files(invocation)
    frames = frame_files(files, folder)
    assert len(frames) == expected, files
    assert sorted(f"{folder}/{frame['file']}" for frame in manifest["frames"]) == frames
    # What the action reported is what is on the volume: every image, and the manifest.
    assert status["outputs"]["count"] == len(files) == expected + 1
    assert status["outputs"]["bytes"] > 0
    for frame in (frames[0], frames[-1]):
        assert decodes_as_jpeg(cluster.read_output(invocation, frame)), frame
    assert cluster.trigger_fired() == fired + 1


def test_a_file_not_matching_the_glob_fires_nothing(cluster: Cluster, clip: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("weather: sunny")
    cluster.upload(RECORD, notes, clip, prefix="no-match")
    cluster.run_of(f"no-match/{clip.name}")  # the .mp4 uploaded with it was handled, so the .txt was seen
    mine = [
        inv["spec"]["file"] for inv in cluster.invocations() if inv["spec"]["file"].startswith("no-match/")
    ]
    assert mine == [f"no-match/{clip.name}"]


def test_the_same_file_uploaded_twice_makes_one_invocation(
    cluster: Cluster, clip: Path, tmp_path: Path
) -> None:
    path = f"twice/{clip.name}"
    cluster.upload(RECORD, clip, prefix="twice")
    first = cluster.run_of(path)
    cluster.upload(RECORD, clip, prefix="twice")  # same path, same content: registered again
    marker = make_sample_video(tmp_path / "marker.mp4", width=64, height=48, frames=4)
    cluster.upload(RECORD, marker, prefix="twice")
    cluster.run_of(f"twice/{marker.name}")
    runs = [inv["metadata"]["name"] for inv in cluster.invocations() if inv["spec"]["file"] == path]
    assert runs == [first["metadata"]["name"]]
    # New content at the same path is a new run.
    (tmp_path / "changed").mkdir()
    changed = make_sample_video(tmp_path / "changed" / clip.name, width=64, height=48, frames=5, seed=99)
    cluster.upload(RECORD, changed, prefix="twice")
    second = cluster.run_of(path, exclude=frozenset({first["metadata"]["name"]}))
    assert second["status"]["phase"] == "Succeeded", second["status"]


def test_a_corrupt_video_fails_with_a_message_and_the_next_upload_succeeds(
    cluster: Cluster, clip: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    cluster.upload(RECORD, corrupt, prefix="corrupt")
    failed = cluster.run_of(f"corrupt/{corrupt.name}")
    assert failed["status"]["phase"] == "Failed", failed["status"]
    assert failed["status"]["exitCode"] != 0
    assert "broken.mp4" in failed["status"]["message"]
    assert "Traceback" not in failed["status"]["message"]
    # Bad input is final (the extractor's exit 3, the Job's pod failure policy): one attempt, not retried.
    assert (failed["status"]["exitCode"], failed["status"]["reason"]) == (3, "PodFailurePolicy")
    assert failed["status"]["attempts"] == 1
    cluster.upload(RECORD, clip, prefix="corrupt")
    assert cluster.run_of(f"corrupt/{clip.name}")["status"]["phase"] == "Succeeded"


def test_a_manual_invocation_runs(cluster: Cluster, clip: Path) -> None:
    cluster.upload(RECORD, clip, prefix="manual")
    cluster.run_of(f"manual/{clip.name}")  # the trigger's own run
    cluster.create_invocation("by-hand", action=ACTION, file=f"manual/{clip.name}")
    done = cluster.finished("by-hand")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert "trigger" not in done["spec"]
    assert done["metadata"]["labels"][labels.ACTION] == ACTION
    assert len(frame_files(cluster.output_files(done), f"manual/{clip.stem}")) == frames_in(clip)
