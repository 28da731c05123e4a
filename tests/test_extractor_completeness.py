"""The frame extractor judges a video complete by what the demuxer and decoder report, and keeps every
frame the ffmpeg command recovers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autoscene.sample_video import make_sample_video

from .extractor_fixtures import Samples, ffmpeg_frame_count, run_in_process, trim_edit_list

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")


@needs_ffmpeg
def test_an_edit_list_that_trims_the_end_is_complete(inputs: Path, outputs: Path) -> None:
    # 5 s at 30 fps with B-frames, the edit list cut to 2.5 s: the header still counts 150 samples.
    video = make_sample_video(inputs / "trimmed.mp4", width=160, height=120, frames=150, fps=30)
    trim_edit_list(video, 2.5)

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="trimmed.mp4")

    assert outcome.status == 0, outcome.summary
    manifest = outcome.manifest("trimmed")
    assert manifest["complete"] is True and manifest["error"] is None
    assert manifest["frameCount"] == ffmpeg_frame_count(video) == 75
    assert outcome.indexes("trimmed") == list(range(75))
    assert outcome.seconds("trimmed")[-1] < 2.5


@needs_ffmpeg
def test_a_damaged_video_keeps_every_frame_ffmpeg_recovers(
    samples: Samples, inputs: Path, outputs: Path
) -> None:
    data = bytearray(samples.path("faststart.mp4").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = bytes(3000)
    video = inputs / "damaged.mp4"
    video.write_bytes(bytes(data))

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="damaged.mp4")

    assert outcome.status == 1
    manifest = outcome.manifest("damaged")
    assert manifest["complete"] is False
    assert manifest["frameCount"] >= ffmpeg_frame_count(video)
    assert outcome.images("damaged") == [frame["file"] for frame in manifest["frames"]]
