"""The frame-extractor Action: which frames come out, named and timed how, and what they look like."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from autoscene.sample_video import frame_timestamps

from .extractor_fixtures import (
    Samples,
    mean_difference,
    opencv_frames,
    read_image,
    run_as_job,
    run_in_process,
)


def nearest_frames(
    timestamps: list[float], rate: float, start: float = 0.0, end: float = math.inf
) -> list[int]:
    """Reference for the fps mode: for each multiple of 1/rate in [start, end) and before the last frame
    ends, the frame with the nearest timestamp (the earlier on a tie), each frame at most once."""
    video_end = timestamps[-1] + min(b - a for a, b in zip(timestamps, timestamps[1:], strict=False))
    in_range = [index for index, seconds in enumerate(timestamps) if start <= seconds < end]
    chosen: list[int] = []
    step = math.ceil(start * rate)
    while step / rate < min(end, video_end) - 1e-6:
        target = step / rate
        best = min(in_range, key=lambda index: (abs(timestamps[index] - target), index))
        if best not in chosen:
            chosen.append(best)
        step += 1
    return chosen


@pytest.mark.parametrize(
    "clip", ["clip.mp4", "hevc.mp4", "hevc-10bit.mp4", "vfr.mp4", "portrait.mp4", "with-audio.mp4"]
)
def test_every_frame_comes_out_as_an_independent_reader_sees_it(
    samples: Samples, inputs: Path, outputs: Path, clip: str
) -> None:
    video = samples.copy(clip, inputs)
    reference = opencv_frames(video)

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE=clip)

    folder = clip.removesuffix(".mp4")
    assert outcome.status == 0, outcome.summary
    assert len(reference) == 48
    assert outcome.images(folder) == [f"frame_{index:06d}.jpg" for index in range(len(reference))]
    assert outcome.seconds(folder) == pytest.approx([seconds for seconds, _ in reference], abs=1e-3)
    manifest = outcome.manifest(folder)
    assert manifest["complete"] is True and manifest["error"] is None
    assert manifest["frameCount"] == manifest["decodedFrames"] == 48
    height, width = reference[0][1].shape[:2]
    assert {(frame["width"], frame["height"]) for frame in manifest["frames"]} == {(width, height)}
    assert outcome.summary["frames"] == 48
    assert outcome.summary["outputs"]["count"] == 49  # the images and the manifest


def test_variable_frame_rate_timestamps_are_the_real_ones(
    samples: Samples, inputs: Path, outputs: Path
) -> None:
    samples.copy("vfr.mp4", inputs)

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="vfr.mp4")

    expected = [ticks / 90_000 for ticks in frame_timestamps(48, 24, variable_frame_rate=True)]
    assert outcome.seconds("vfr") == pytest.approx(expected, abs=1e-4)
    assert len(set(round(b - a, 4) for a, b in zip(expected, expected[1:], strict=False))) > 1


def test_every_nth_frame_keeps_real_frame_numbers(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("clip.mp4", inputs)

    outcome = run_in_process(
        inputs, outputs, AUTOSCENE_FILE="clip.mp4", EXTRACT_MODE="every-nth", EXTRACT_EVERY_N="5"
    )

    assert outcome.status == 0
    assert outcome.indexes("clip") == list(range(0, 48, 5))
    assert outcome.images("clip") == [f"frame_{index:06d}.jpg" for index in range(0, 48, 5)]
    assert outcome.seconds("clip") == pytest.approx([index / 24 for index in range(0, 48, 5)], abs=1e-4)
    assert outcome.manifest("clip")["decodedFrames"] == 48


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(1, [0, 24]), (5, [0, 5, 10, 14, 19, 24, 29, 34, 38, 43]), (100, list(range(48)))],
)
def test_fps_mode_picks_the_frame_nearest_each_tick(
    samples: Samples, inputs: Path, outputs: Path, rate: float, expected: list[int]
) -> None:
    samples.copy("clip.mp4", inputs)

    outcome = run_in_process(
        inputs, outputs, AUTOSCENE_FILE="clip.mp4", EXTRACT_MODE="fps", EXTRACT_FPS=str(rate)
    )

    assert outcome.status == 0
    assert outcome.indexes("clip") == expected == nearest_frames([index / 24 for index in range(48)], rate)
    assert outcome.seconds("clip") == pytest.approx([index / 24 for index in expected], abs=1e-4)


def test_fps_mode_samples_a_variable_frame_rate_video_by_time(
    samples: Samples, inputs: Path, outputs: Path
) -> None:
    video = samples.copy("vfr.mp4", inputs)
    timestamps = [seconds for seconds, _ in opencv_frames(video)]

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="vfr.mp4", EXTRACT_MODE="fps", EXTRACT_FPS="2.5")

    expected = nearest_frames(timestamps, 2.5)
    assert outcome.indexes("vfr") == expected
    assert len(expected) == 8  # one frame per 0.4 s of a 2.9 s clip
    assert outcome.seconds("vfr") == pytest.approx([timestamps[index] for index in expected], abs=1e-3)


def test_fps_mode_within_a_time_range(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("clip.mp4", inputs)

    outcome = run_in_process(
        inputs, outputs, "--mode=fps", "--fps=4", "--start=0.5", "--end=1.5", AUTOSCENE_FILE="clip.mp4"
    )

    assert outcome.indexes("clip") == [12, 18, 24, 30]


def test_keyframes_mode_decodes_only_key_frames(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("gop12.mp4", inputs)

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="gop12.mp4", EXTRACT_MODE="keyframes")

    assert outcome.status == 0, outcome.summary
    assert outcome.indexes("gop12") == [0, 12, 24, 36]
    assert outcome.seconds("gop12") == pytest.approx([0.0, 0.5, 1.0, 1.5])
    manifest = outcome.manifest("gop12")
    assert manifest["decodedFrames"] == 4 and manifest["complete"] is True


@pytest.mark.parametrize("clip", ["clip.mp4", "gop12.mp4"])
def test_time_range_starts_mid_group_of_pictures(
    samples: Samples, inputs: Path, outputs: Path, clip: str
) -> None:
    samples.copy(clip, inputs)

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE=clip, EXTRACT_START="0.52", EXTRACT_END="1.5")

    folder = clip.removesuffix(".mp4")
    assert outcome.status == 0
    assert outcome.indexes(folder) == list(range(13, 36))
    assert outcome.seconds(folder) == pytest.approx([index / 24 for index in range(13, 36)], abs=1e-4)
    reference = opencv_frames(samples.path(clip))
    # Frame 13 is really frame 13, not the first frame decoded.
    assert mean_difference(read_image(outputs / folder / "frame_000013.jpg"), reference[13][1]) < 3
    assert mean_difference(read_image(outputs / folder / "frame_000013.jpg"), reference[12][1]) > 3


def test_maximum_number_of_frames(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("clip.mp4", inputs)

    first = run_in_process(inputs, outputs, AUTOSCENE_FILE="clip.mp4", EXTRACT_MAX_FRAMES="7")
    assert first.indexes("clip") == list(range(7))
    assert first.manifest("clip")["complete"] is True

    sampled = run_in_process(
        inputs,
        outputs,
        AUTOSCENE_FILE="clip.mp4",
        EXTRACT_MODE="every-nth",
        EXTRACT_EVERY_N="5",
        EXTRACT_MAX_FRAMES="3",
    )
    assert sampled.indexes("clip") == [0, 5, 10]
    # The second run replaced the first one's images: the folder matches its manifest.
    assert sampled.images("clip") == ["frame_000000.jpg", "frame_000005.jpg", "frame_000010.jpg"]


@pytest.mark.parametrize("clip", ["clip.mp4", "hevc-10bit.mp4"])
def test_images_match_the_decoded_video(samples: Samples, inputs: Path, outputs: Path, clip: str) -> None:
    """JPEG straight from YUV must stretch video range to full range, or the images come out grey."""
    video = samples.copy(clip, inputs)
    reference = opencv_frames(video)

    run_in_process(inputs, outputs, AUTOSCENE_FILE=clip)

    folder = clip.removesuffix(".mp4")
    for index in (0, 23, 47):
        image = read_image(outputs / folder / f"frame_{index:06d}.jpg")
        assert mean_difference(image, reference[index][1]) < 3
    assert mean_difference(read_image(outputs / folder / "frame_000000.jpg"), reference[1][1]) > 3


def test_png_output(samples: Samples, inputs: Path, outputs: Path) -> None:
    video = samples.copy("clip.mp4", inputs)
    reference = opencv_frames(video)

    outcome = run_in_process(
        inputs, outputs, AUTOSCENE_FILE="clip.mp4", EXTRACT_FORMAT="png", EXTRACT_MAX_FRAMES="3"
    )

    assert outcome.images("clip") == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert outcome.manifest("clip")["format"] == "png"
    for index in range(3):
        assert (
            mean_difference(read_image(outputs / "clip" / f"frame_{index:06d}.png"), reference[index][1]) < 2
        )


def test_quality_setting_changes_the_jpeg(samples: Samples, inputs: Path, tmp_path: Path) -> None:
    samples.copy("clip.mp4", inputs)
    sizes = {}
    for quality in ("40", "95"):
        outcome = run_in_process(
            inputs,
            tmp_path / quality,
            AUTOSCENE_FILE="clip.mp4",
            EXTRACT_QUALITY=quality,
            EXTRACT_MAX_FRAMES="4",
        )
        sizes[quality] = outcome.summary["outputs"]["bytes"]
        assert outcome.manifest("clip")["quality"] == int(quality)
    assert sizes["40"] < sizes["95"] / 2


@pytest.mark.parametrize(
    ("settings", "size"),
    [
        ({"EXTRACT_MAX_WIDTH": "80"}, (80, 60)),
        ({"EXTRACT_MAX_HEIGHT": "30"}, (40, 30)),
        ({"EXTRACT_MAX_WIDTH": "100", "EXTRACT_MAX_HEIGHT": "100"}, (100, 75)),
        ({"EXTRACT_MAX_WIDTH": "1000"}, (160, 120)),  # never enlarged
    ],
)
def test_resize_keeps_the_aspect_ratio(
    samples: Samples, inputs: Path, outputs: Path, settings: dict[str, str], size: tuple[int, int]
) -> None:
    samples.copy("clip.mp4", inputs)

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="clip.mp4", EXTRACT_MAX_FRAMES="2", **settings)

    picture = read_image(outputs / "clip" / "frame_000001.jpg")
    assert (picture.shape[1], picture.shape[0]) == size
    assert (
        outcome.manifest("clip")["frames"][1]["width"],
        outcome.manifest("clip")["frames"][1]["height"],
    ) == size


@pytest.mark.parametrize(
    ("clip", "wrong_way"), [("portrait.mp4", "rotated-90.mp4"), ("rotated-90.mp4", "portrait.mp4")]
)
def test_rotation_metadata_turns_images_upright(
    samples: Samples, inputs: Path, outputs: Path, clip: str, wrong_way: str
) -> None:
    video = samples.copy(clip, inputs)
    upright = opencv_frames(video)  # OpenCV applies the rotation too
    turned_the_other_way = opencv_frames(samples.path(wrong_way))

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE=clip, EXTRACT_MAX_FRAMES="5")

    folder = clip.removesuffix(".mp4")
    assert outcome.status == 0
    image = read_image(outputs / folder / "frame_000004.jpg")
    assert image.shape[:2] == (160, 120)
    assert mean_difference(image, upright[4][1]) < 3
    assert mean_difference(image, turned_the_other_way[4][1]) > 10
    assert outcome.manifest(folder)["frames"][4]["width"] == 120


def test_upside_down_video(samples: Samples, inputs: Path, outputs: Path) -> None:
    video = samples.copy("upside-down.mp4", inputs)
    upright = opencv_frames(video)

    run_in_process(inputs, outputs, AUTOSCENE_FILE="upside-down.mp4", EXTRACT_MAX_FRAMES="1")

    image = read_image(outputs / "upside-down" / "frame_000000.jpg")
    assert mean_difference(image, upright[0][1]) < 3
    assert mean_difference(image, upright[0][1][::-1, ::-1]) > 10


def test_resize_applies_to_the_upright_image(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("portrait.mp4", inputs)

    run_in_process(
        inputs, outputs, AUTOSCENE_FILE="portrait.mp4", EXTRACT_MAX_HEIGHT="80", EXTRACT_MAX_FRAMES="1"
    )

    assert read_image(outputs / "portrait" / "frame_000000.jpg").shape[:2] == (80, 60)


def test_all_videos_of_the_input_folder_when_no_file_is_named(
    samples: Samples, inputs: Path, outputs: Path
) -> None:
    samples.copy("clip.mp4", inputs, "b.mp4")
    samples.copy("gop12.mp4", inputs, "a/c.MP4")
    samples.copy("clip.mp4", inputs, "a/notes.txt")

    outcome = run_as_job(inputs, outputs, EXTRACT_MODE="every-nth", EXTRACT_EVERY_N="12")

    assert outcome.status == 0, outcome.log
    assert outcome.summary["frames"] == 8
    assert outcome.summary["message"].startswith("extracted 8 frames from 2 videos")
    assert outcome.summary["outputs"]["paths"][:2] == ["a/c/manifest.json", "b/manifest.json"]
    assert (
        outcome.images("a/c")
        == outcome.images("b")
        == [f"frame_{index:06d}.jpg" for index in (0, 12, 24, 36)]
    )
    assert outcome.manifest("a/c")["source"] == "a/c.MP4"
    assert not (outputs / "a" / "notes").exists()


def test_a_job_run_reports_progress_and_summary(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("clip.mp4", inputs)

    outcome = run_as_job(inputs, outputs, AUTOSCENE_FILE="clip.mp4")

    assert outcome.status == 0, outcome.log
    assert "clip.mp4: 48 images" in outcome.log
    summary = outcome.summary
    assert set(summary) == {"message", "outputs", "frames", "seconds", "framesPerSecond"}
    assert set(summary["outputs"]) == {"count", "bytes", "paths"}
    assert summary["message"].startswith("extracted 48 frames from clip.mp4 in ")
    assert summary["frames"] == 48 and summary["outputs"]["count"] == 49
    written = [path for path in (outputs / "clip").iterdir()]
    assert summary["outputs"]["bytes"] == sum(path.stat().st_size for path in written)
    assert summary["outputs"]["paths"] == ["clip/manifest.json"] + [
        f"clip/frame_{i:06d}.jpg" for i in range(4)
    ]
    assert all((outputs / path).is_file() for path in summary["outputs"]["paths"])
    assert summary["framesPerSecond"] == pytest.approx(48 / summary["seconds"], rel=0.05)
