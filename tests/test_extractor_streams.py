"""Which video stream the frame extractor reads when a file holds several."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .extractor_fixtures import ffmpeg_frame_count, run_in_process

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")


@pytest.fixture(scope="module")
def preview_first(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160x120 preview stream first (12 frames), the 640x480 main stream second (8 frames), marked
    default: the layout of some cameras' and editors' files."""
    path = tmp_path_factory.mktemp("streams") / "two-streams.mp4"
    command = [
        "ffmpeg", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=s=160x120:r=12:d=1",
        "-f", "lavfi", "-i", "testsrc2=s=640x480:r=8:d=1",
        "-map", "0:v", "-map", "1:v", "-c:v", "libx264", "-preset", "ultrafast",
        "-disposition:v:0", "0", "-disposition:v:1", "default", str(path),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return path


def test_the_stream_ffmpeg_picks_is_read_and_named(preview_first: Path, inputs: Path, outputs: Path) -> None:
    shutil.copyfile(preview_first, inputs / "two.mp4")

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="two.mp4")

    assert outcome.status == 0, outcome.summary
    manifest = outcome.manifest("two")
    assert (manifest["stream"], manifest["width"], manifest["height"]) == (1, 640, 480)
    assert manifest["frameCount"] == ffmpeg_frame_count(preview_first, stream=None) == 8
    assert {(frame["width"], frame["height"]) for frame in manifest["frames"]} == {(640, 480)}


def test_an_option_chooses_another_stream(preview_first: Path, inputs: Path, outputs: Path) -> None:
    shutil.copyfile(preview_first, inputs / "two.mp4")

    outcome = run_in_process(inputs, outputs, "--stream", "0", AUTOSCENE_FILE="two.mp4")

    assert outcome.status == 0, outcome.summary
    manifest = outcome.manifest("two")
    assert (manifest["stream"], manifest["width"], manifest["height"]) == (0, 160, 120)
    assert manifest["frameCount"] == 12


def test_a_stream_the_file_lacks_is_bad_input(preview_first: Path, inputs: Path, outputs: Path) -> None:
    shutil.copyfile(preview_first, inputs / "two.mp4")

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="two.mp4", EXTRACT_STREAM="5")

    assert outcome.status == 3
    assert outcome.summary["message"] == "two.mp4: no video stream 5 (video streams: 0, 1)"
