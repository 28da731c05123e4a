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


@pytest.mark.parametrize("kept", [11, 22])
def test_a_recording_cut_between_two_frames_is_truncated(
    samples: Samples, inputs: Path, outputs: Path, kept: int
) -> None:
    """Cut exactly where a frame's bytes end, the file holds every frame before the cut whole, and the
    demuxer ends there as at a normal end: the `mdat` box's size still says the file is short."""
    import av

    whole = samples.path("faststart.mp4")
    with av.open(str(whole)) as container:
        packets = [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]
    position, size = sorted(packets)[kept - 1]
    (inputs / "cut.mp4").write_bytes(whole.read_bytes()[: position + size])

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="cut.mp4")

    assert outcome.status == 1, outcome.summary
    manifest = outcome.manifest("cut")
    assert manifest["complete"] is False and manifest["frameCount"] == kept
    assert outcome.summary["message"].startswith("cut.mp4: truncated after ")
