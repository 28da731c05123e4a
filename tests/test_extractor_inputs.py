"""The frame-extractor Action on bad input, awkward names and bad settings, and its termination log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoscene.sample_video import make_sample_video

from .extractor_fixtures import (
    EXTRACTOR,
    SUMMARY_KEYS,
    Samples,
    extractor,
    job_environment,
    read_summary,
    run_as_job,
    run_in_process,
)


def truncate(source: Path, target: Path, keep: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def assert_failure_summary(summary: dict[str, object], message: str) -> None:
    assert set(summary) == SUMMARY_KEYS
    assert summary["message"] == message


@pytest.mark.parametrize(
    ("name", "make", "message", "status"),
    [
        ("empty.mp4", lambda path, samples: path.write_bytes(b""), "empty.mp4: empty file (0 bytes)", 3),
        (
            "garbage.mp4",
            lambda path, samples: path.write_bytes(bytes(range(256)) * 40),
            "garbage.mp4: not a readable video (moov atom not found)",
            3,
        ),
        (
            "cut-short.mp4",  # the index (moov) is at the end of the file and was never written
            lambda path, samples: truncate(samples.path("clip.mp4"), path, 0.6),
            "cut-short.mp4: recording is incomplete: its index (moov) was never written — "
            "was the upload or the recording cut off?",
            3,
        ),
        (
            "sound.mp4",
            lambda path, samples: path.write_bytes(samples.path("audio-only.mp4").read_bytes()),
            "sound.mp4: no video stream (streams: audio)",
            3,
        ),
        ("missing.mp4", lambda path, samples: None, "missing.mp4: no such file", 1),
        ("folder.mp4", lambda path, samples: path.mkdir(), "folder.mp4: is a folder, not a video", 3),
    ],
)
def test_unreadable_inputs_fail_clearly_and_write_nothing(
    samples: Samples,
    inputs: Path,
    outputs: Path,
    name: str,
    make: object,
    message: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make(inputs / name, samples)  # type: ignore[operator]

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE=name)

    assert outcome.status == status  # 3: bad input, final; 1: may pass on a retry
    assert_failure_summary(outcome.summary, message)
    said = [record.getMessage() for record in caplog.records if record.name == "extract_frames"]
    assert said.count(message) == 1, said  # in the run's log once, not again as the run's summary
    assert outcome.summary["outputs"] == {"count": 0, "bytes": 0, "paths": []}
    assert not (outputs / name.removesuffix(".mp4")).exists()


def test_truncated_video_keeps_what_decodes_and_says_where_it_ends(
    samples: Samples, inputs: Path, outputs: Path
) -> None:
    truncate(samples.path("faststart.mp4"), inputs / "cut.mp4", 0.5)

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="cut.mp4")

    assert outcome.status == 1
    manifest = outcome.manifest("cut")
    frames = manifest["frames"]
    assert 5 < len(frames) < 48
    assert [frame["index"] for frame in frames] == list(range(len(frames)))
    assert outcome.images("cut") == [frame["file"] for frame in frames]
    last_good = frames[-1]["seconds"]
    expected = f"cut.mp4: truncated after {last_good:.2f} s (extracted {len(frames)} frames)"
    assert outcome.summary["message"] == expected
    assert manifest["complete"] is False and manifest["error"] == expected.removeprefix("cut.mp4: ")
    assert outcome.summary["frames"] == len(frames)


def test_damaged_video_keeps_the_good_frames_and_fails(samples: Samples, inputs: Path, outputs: Path) -> None:
    data = bytearray(samples.path("faststart.mp4").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = bytes(3000)
    (inputs / "damaged.mp4").write_bytes(bytes(data))

    outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="damaged.mp4")

    assert outcome.status == 1
    message = outcome.summary["message"]
    assert message.startswith("damaged.mp4: corrupt after ") and message.endswith(" frames)")
    manifest = outcome.manifest("damaged")
    assert manifest["complete"] is False
    assert 0 < manifest["frameCount"] < 48
    assert f"(extracted {manifest['frameCount']} frames)" in message


def test_awkward_file_names_work_as_a_job(samples: Samples, inputs: Path, outputs: Path) -> None:
    names = [
        "my holiday clip.mp4",
        "-starts-with-dash.mp4",
        "vidéo été 视频.mp4",
        "http:looks-like-a-url.mp4",
    ]
    for name in names:
        samples.copy("clip.mp4", inputs, f"sub dir/{name}")

    for name in names:
        outcome = run_as_job(inputs, outputs, AUTOSCENE_FILE=f"sub dir/{name}", EXTRACT_MAX_FRAMES="2")
        assert outcome.status == 0, outcome.log
        folder = f"sub dir/{name.removesuffix('.mp4')}"
        assert outcome.images(folder) == ["frame_000000.jpg", "frame_000001.jpg"]
        assert outcome.summary["message"].startswith(f"extracted 2 frames from sub dir/{name} in ")
        assert outcome.summary["outputs"]["paths"][0] == f"{folder}/manifest.json"


def test_file_flag_with_a_leading_dash(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("clip.mp4", inputs, "-x.mp4")

    outcome = run_in_process(inputs, outputs, "--file=-x.mp4", "--max-frames=1")

    assert outcome.status == 0
    assert outcome.images("-x") == ["frame_000000.jpg"]


def test_a_failed_video_does_not_stop_the_others(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("clip.mp4", inputs, "a.mp4")
    (inputs / "b.mp4").write_bytes(b"not a video")
    samples.copy("clip.mp4", inputs, "c.mp4")

    outcome = run_in_process(inputs, outputs, EXTRACT_MAX_FRAMES="3")

    assert outcome.status == 3  # the only failure is bad input
    assert outcome.summary["message"].startswith("1 of 3 videos failed: b.mp4: not a readable video")
    assert outcome.summary["frames"] == 6
    assert outcome.images("a") == outcome.images("c") == [f"frame_00000{index}.jpg" for index in range(3)]


def test_an_empty_input_folder_is_nothing_to_do(inputs: Path, outputs: Path) -> None:
    outcome = run_in_process(inputs, outputs)

    assert outcome.status == 0
    assert outcome.summary["message"] == f"no .mp4 files under {inputs}"
    assert outcome.summary["frames"] == 0


def test_a_missing_input_folder_fails(tmp_path: Path, outputs: Path) -> None:
    outcome = run_in_process(tmp_path / "nowhere", outputs)

    assert outcome.status == 1
    assert outcome.summary["message"] == f"input folder {tmp_path / 'nowhere'} is not a folder"


@pytest.mark.parametrize(
    ("settings", "argv", "complaint"),
    [
        (
            {"EXTRACT_MODE": "sometimes"},
            [],
            "EXTRACT_MODE='sometimes': must be one of all, every-nth, fps, keyframes",
        ),
        ({"EXTRACT_MODE": "every-nth"}, [], "EXTRACT_MODE=every-nth needs EXTRACT_EVERY_N (--every-n)"),
        ({"EXTRACT_MODE": "every-nth", "EXTRACT_EVERY_N": "0"}, [], "EXTRACT_EVERY_N='0': must be"),
        ({"EXTRACT_MODE": "fps"}, [], "EXTRACT_MODE=fps needs EXTRACT_FPS (--fps)"),
        ({"EXTRACT_MODE": "fps", "EXTRACT_FPS": "fast"}, [], "EXTRACT_FPS='fast': must be a number"),
        ({"EXTRACT_MODE": "fps", "EXTRACT_FPS": "-1"}, [], "EXTRACT_FPS='-1': must be a number above 0"),
        (
            {"EXTRACT_START": "2", "EXTRACT_END": "1"},
            [],
            "EXTRACT_END (1.0) must be after EXTRACT_START (2.0)",
        ),
        ({"EXTRACT_START": "nan"}, [], "EXTRACT_START='nan': must be a finite number"),
        ({"EXTRACT_QUALITY": "101"}, [], "EXTRACT_QUALITY='101': must be a whole number from 1 to 100"),
        ({"EXTRACT_FORMAT": "gif"}, [], "EXTRACT_FORMAT='gif': must be one of jpeg, png"),
        ({"EXTRACT_MAX_WIDTH": "wide"}, [], "EXTRACT_MAX_WIDTH='wide': must be a whole number"),
        ({"EXTRACT_MAX_FRAMES": "1.5"}, [], "EXTRACT_MAX_FRAMES='1.5': must be a whole number"),
        ({"AUTOSCENE_FILE": "../secret.mp4"}, [], "AUTOSCENE_FILE='../secret.mp4': must be a path inside"),
        ({"AUTOSCENE_FILE": "/etc/passwd"}, [], "AUTOSCENE_FILE='/etc/passwd': must be a path inside"),
        ({}, ["--mode", "keyframe"], "--mode='keyframe': must be one of"),
        ({}, ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_invalid_settings_are_usage_errors(
    inputs: Path, outputs: Path, settings: dict[str, str], argv: list[str], complaint: str
) -> None:
    outcome = run_in_process(inputs, outputs, *argv, **settings)

    assert outcome.status == 2
    assert outcome.summary["message"].startswith("invalid settings: ")
    assert complaint in outcome.summary["message"]
    assert not outputs.exists()


def test_usage_error_as_a_job_exits_2_and_explains(inputs: Path, outputs: Path) -> None:
    outcome = run_as_job(inputs, outputs, EXTRACT_MODE="fps", EXTRACT_FPS="0")

    assert outcome.status == 2
    assert "usage: extract_frames.py" in outcome.log
    assert "EXTRACT_FPS='0': must be a number above 0" in outcome.log
    assert outcome.summary["message"] == "invalid settings: EXTRACT_FPS='0': must be a number above 0"


def test_flags_win_over_environment(samples: Samples, inputs: Path, outputs: Path) -> None:
    samples.copy("clip.mp4", inputs)

    outcome = run_in_process(
        inputs,
        outputs,
        "--mode",
        "every-nth",
        "--every-n",
        "20",
        EXTRACT_MODE="sometimes",
        AUTOSCENE_FILE="clip.mp4",
    )

    assert outcome.status == 0
    assert outcome.indexes("clip") == [0, 20, 40]


def test_help_documents_every_setting() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXTRACTOR), "--help"], capture_output=True, text=True, timeout=30
    )

    assert completed.returncode == 0
    for variable in (
        "INPUT_FOLDER",
        "OUTPUT_FOLDER",
        "AUTOSCENE_FILE",
        "AUTOSCENE_TERMINATION_LOG",
        "EXTRACT_MODE",
        "EXTRACT_EVERY_N",
        "EXTRACT_FPS",
        "EXTRACT_START",
        "EXTRACT_END",
        "EXTRACT_MAX_FRAMES",
        "EXTRACT_FORMAT",
        "EXTRACT_QUALITY",
        "EXTRACT_MAX_WIDTH",
        "EXTRACT_MAX_HEIGHT",
    ):
        assert completed.stdout.count(variable) >= 2, variable  # the flag's line and the description


def test_termination_log_stays_within_4096_bytes(inputs: Path, outputs: Path) -> None:
    for number in range(40):
        (inputs / f"{number:02d}-{'a very long and unhelpful video file name ' * 3}.mp4").write_bytes(b"junk")

    outcome = run_in_process(inputs, outputs)

    raw = (outputs.parent / "termination-log.json").read_bytes()
    assert len(raw) <= 4096
    summary = json.loads(raw)
    assert set(summary) == SUMMARY_KEYS
    assert summary["message"].startswith("40 of 40 videos failed: 00-a very long")
    assert outcome.status == 3


def test_termination_log_fitting_keeps_json_valid_with_multibyte_text() -> None:
    module = extractor("summary")
    document = {
        "message": "视频" * 3000,
        "outputs": {"count": 1, "bytes": 2, "paths": ["é" * 1000] * 5},
        "frames": 1,
        "seconds": 1.0,
        "framesPerSecond": 1.0,
    }

    fitted = module.fit_termination_log(document)

    assert len(fitted) <= 4096
    parsed = json.loads(fitted)
    assert parsed["outputs"]["paths"] == [] and parsed["message"].startswith("视频视频")
    assert parsed["frames"] == 1


def test_unwritable_termination_log_is_only_a_warning(
    samples: Samples, inputs: Path, outputs: Path, tmp_path: Path
) -> None:
    samples.copy("clip.mp4", inputs)

    outcome = run_as_job(
        inputs,
        outputs,
        AUTOSCENE_FILE="clip.mp4",
        EXTRACT_MAX_FRAMES="1",
        AUTOSCENE_TERMINATION_LOG=str(tmp_path / "no" / "such" / "folder" / "log"),
    )

    assert outcome.status == 0, outcome.log
    assert "WARNING cannot write the summary" in outcome.log
    assert outcome.images("clip") == ["frame_000000.jpg"]


def test_sigterm_finishes_the_manifest(inputs: Path, outputs: Path) -> None:
    # Long enough that extraction is still running when the signal arrives.
    make_sample_video(inputs / "long.mp4", width=320, height=240, frames=1500, fps=30, preset="ultrafast")
    environ = {**os.environ, **job_environment(inputs, outputs, AUTOSCENE_FILE="long.mp4")}
    process = subprocess.Popen(
        [sys.executable, str(EXTRACTOR)], env=environ, stderr=subprocess.PIPE, text=True
    )
    manifest = outputs / "long" / "manifest.json"
    while not manifest.exists() and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, log = process.communicate(timeout=60)

    assert process.returncode == 143, log
    document = json.loads(manifest.read_text())
    assert document["complete"] is False
    assert document["error"].startswith("stopped by SIGTERM")
    assert sorted(frame["file"] for frame in document["frames"]) == sorted(
        path.name for path in manifest.parent.glob("frame_*")
    )
    summary = read_summary(outputs)
    assert summary["message"].startswith("long.mp4: stopped by SIGTERM")
    assert summary["frames"] == len(document["frames"])


def test_bad_input_and_a_failure_that_may_pass_exit_1(samples: Samples, inputs: Path, outputs: Path) -> None:
    (inputs / "a.mp4").write_bytes(b"not a video")
    truncate(samples.path("faststart.mp4"), inputs / "b.mp4", 0.5)  # frames extracted, then cut short

    outcome = run_in_process(inputs, outputs)

    assert outcome.status == 1


def test_batch_mode_takes_upper_case_extensions_and_skips_appledouble_sidecars(
    samples: Samples, inputs: Path, outputs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples.copy("clip.mp4", inputs, "clip.mp4")
    samples.copy("clip.mp4", inputs, "camera/GX010042.MP4")
    # What macOS writes beside each file on a FAT or exFAT drive: AppleDouble magic, no video.
    (inputs / "._clip.mp4").write_bytes(bytes.fromhex("00051607 00020000") + bytes(74))
    (inputs / "camera" / "._GX010042.MP4").write_bytes(bytes.fromhex("00051607 00020000") + bytes(74))

    with caplog.at_level("INFO", logger="extract_frames"):
        outcome = run_in_process(inputs, outputs, EXTRACT_MAX_FRAMES="2")

    assert outcome.status == 0, outcome.summary
    assert outcome.summary["message"].startswith("extracted 4 frames from 2 videos")
    assert (
        outcome.images("clip")
        == outcome.images("camera/GX010042")
        == ["frame_000000.jpg", "frame_000001.jpg"]
    )
    assert "skipping 2 AppleDouble sidecar file(s)" in caplog.text
    assert "camera/._GX010042.MP4" in caplog.text
