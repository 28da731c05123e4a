"""The contact-sheet Action: run on what the frame extractor wrote, which frames it shows, where and how,
and how it refuses input that cannot work."""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest

from .extractor_fixtures import Samples, mean_difference, read_image, run_in_process

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "images" / "contact-sheet" / "contact_sheet.py"
SHEET = "contact_sheet.jpg"
# The sample clip: 160x120, 48 frames at 24 frames/s.
CLIP_WIDTH, CLIP_HEIGHT, CLIP_FRAMES = 160, 120, 48


def program(part: str) -> ModuleType:
    """A module of the program's package, imported from the image's folder (it is not installed)."""
    folder = str(PROGRAM.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(f"contactsheet.{part}")


@dataclass
class Outcome:
    status: int
    summary: dict[str, Any]
    stderr: str
    output: Path

    @property
    def last_line(self) -> str:
        return self.stderr.strip().splitlines()[-1]

    def files(self) -> list[str]:
        if not self.output.exists():
            return []
        return sorted(path.relative_to(self.output).as_posix() for path in self.output.rglob("*"))


def run_sheet(inputs: Path, outputs: Path, **settings: str) -> Outcome:
    """Runs the program as the Job's container does: `python contact_sheet.py`, settings in env."""
    log = outputs.parent / "termination-log.json"
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "INPUT_FOLDER": str(inputs),
        "OUTPUT_FOLDER": str(outputs),
        "TERMINATION_LOG": str(log),
        **settings,
    }
    completed = subprocess.run(
        [sys.executable, str(PROGRAM)], env=environ, capture_output=True, text=True, timeout=60
    )
    summary: dict[str, Any] = json.loads(log.read_text()) if log.exists() else {}
    return Outcome(completed.returncode, summary, completed.stderr, outputs)


@pytest.fixture(scope="module")
def extracted(samples: Samples, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frames folder `clip/` (manifest.json and 48 images) made by the real frame extractor."""
    videos, frames = tmp_path_factory.mktemp("videos"), tmp_path_factory.mktemp("frames") / "out"
    samples.copy("clip.mp4", videos)
    outcome = run_in_process(videos, frames, AUTOSCENE_FILE="clip.mp4")
    assert outcome.status == 0, outcome.summary
    assert len(outcome.manifest("clip")["frames"]) == CLIP_FRAMES
    return frames


@pytest.fixture(scope="module")
def extracted_vfr(samples: Samples, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frames folder `vfr/` of a variable frame rate clip (frame durations of 1, 2 and 3 ticks)."""
    videos, frames = tmp_path_factory.mktemp("videos"), tmp_path_factory.mktemp("frames") / "out"
    samples.copy("vfr.mp4", videos)
    outcome = run_in_process(videos, frames, AUTOSCENE_FILE="vfr.mp4")
    assert outcome.status == 0, outcome.summary
    return frames


@pytest.fixture
def files(extracted: Path, tmp_path: Path) -> Path:
    """The contact sheet's INPUT_FOLDER: a copy of the extractor's output, free to spoil."""
    folder = tmp_path / "files"
    shutil.copytree(extracted, folder)
    return folder


@pytest.fixture
def sheets(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


def read_manifest(folder: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return manifest


def write_manifest(folder: Path, manifest: Any) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest))


def expected_choice(seconds: list[float], count: int) -> list[int]:
    """Reference: for `count` times spread evenly from the first timestamp to the last, the frame with the
    nearest timestamp (the earlier on a tie); every frame when there are no more than `count`."""
    if count >= len(seconds):
        return list(range(len(seconds)))
    first, last = seconds[0], seconds[-1]
    step = (last - first) / (count - 1)
    chosen = [
        min(range(len(seconds)), key=lambda i: (abs(seconds[i] - (first + k * step)), i))
        for k in range(count)
    ]
    assert len(set(chosen)) == count, "the reference needs timestamps where no two times share a frame"
    return chosen


def label_size(tile_width: int) -> tuple[int, int]:
    """(width, height) of a lower left corner surely inside the label: the label is at least as big as
    "00:00:00.000" in OpenCV's Hershey simplex font at 0.4 of its size (72x11 pixels and a margin)."""
    return min(72, tile_width), 16


def tile_of(sheet: np.ndarray, position: int, columns: int, width: int, height: int) -> np.ndarray:
    row, column = divmod(position, columns)
    return sheet[row * height : (row + 1) * height, column * width : (column + 1) * width]


def scaled(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(picture, (width, height), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize(
    ("settings", "count", "columns", "tile_width"),
    [
        ({}, 16, 4, 320),  # the defaults
        ({"SHEET_FRAMES": "5", "SHEET_COLUMNS": "3", "SHEET_TILE_WIDTH": "200"}, 5, 3, 200),
        ({"SHEET_FRAMES": "100", "SHEET_COLUMNS": "8", "SHEET_TILE_WIDTH": "96"}, CLIP_FRAMES, 8, 96),
    ],
    ids=["defaults", "five-frames", "more-than-the-video-has"],
)
def test_the_sheet_shows_evenly_spaced_frames_in_a_grid_with_their_timestamps(
    files: Path, sheets: Path, settings: dict[str, str], count: int, columns: int, tile_width: int
) -> None:
    outcome = run_sheet(files, sheets, AUTOSCENE_FILE="clip/manifest.json", **settings)

    assert outcome.status == 0, outcome.stderr
    assert outcome.files() == ["clip", f"clip/{SHEET}"]
    sheet = read_image(sheets / "clip" / SHEET)
    tile_height = round(tile_width * CLIP_HEIGHT / CLIP_WIDTH)
    rows = math.ceil(count / columns)
    assert sheet.shape == (rows * tile_height, columns * tile_width, 3)

    manifest = read_manifest(files / "clip")
    seconds = [frame["seconds"] for frame in manifest["frames"]]
    chosen = expected_choice(seconds, count)
    references = [
        scaled(read_image(files / "clip" / frame["file"]), tile_width, tile_height)
        for frame in manifest["frames"]
    ]
    picture_rows = slice(0, tile_height * 6 // 10)  # well above the label in the lower left corner
    label_width, label_height = label_size(tile_width)
    labels = []
    for position, index in enumerate(chosen):
        tile = tile_of(sheet, position, columns, tile_width, tile_height)
        differences = [
            mean_difference(tile[picture_rows], reference[picture_rows]) for reference in references
        ]
        assert differences[index] < 4, (position, index, differences[index])
        assert differences.index(min(differences)) == index, (position, index)

        label = tile[-label_height:, :label_width]
        assert mean_difference(label, references[index][-label_height:, :label_width]) > 30, position
        assert (label.min(axis=2) > 200).any() and (label.max(axis=2) < 50).any()  # white on black
        labels.append(label)
    assert all(mean_difference(a, b) > 1 for a, b in zip(labels, labels[1:], strict=False))  # times differ
    for position in range(count, rows * columns):  # empty cells of the last row: one flat colour
        assert tile_of(sheet, position, columns, tile_width, tile_height).std() < 3

    assert outcome.summary["outputs"] == {
        "count": 1,
        "bytes": (sheets / "clip" / SHEET).stat().st_size,
        "paths": [f"clip/{SHEET}"],
    }
    assert outcome.summary["sheets"] == 1 and outcome.summary["frames"] == count
    assert f"clip/{SHEET}" in outcome.summary["message"]
    assert f"{count} frames" in outcome.summary["message"]


def test_with_a_variable_frame_rate_frames_are_spaced_by_time_not_by_position(
    extracted_vfr: Path, sheets: Path
) -> None:
    outcome = run_sheet(extracted_vfr, sheets, AUTOSCENE_FILE="vfr/manifest.json", SHEET_TILE_WIDTH="160")

    assert outcome.status == 0, outcome.stderr
    manifest = read_manifest(extracted_vfr / "vfr")
    chosen = expected_choice([frame["seconds"] for frame in manifest["frames"]], 16)
    by_position = [round(k * (CLIP_FRAMES - 1) / 15) for k in range(16)]
    assert chosen != by_position  # the clip tells the two apart
    sheet = read_image(sheets / "vfr" / SHEET)
    assert sheet.shape == (4 * 120, 4 * 160, 3)
    references = [
        scaled(read_image(extracted_vfr / "vfr" / frame["file"]), 160, 120) for frame in manifest["frames"]
    ]
    for position, index in enumerate(chosen):
        tile = tile_of(sheet, position, 4, 160, 120)[:70]
        differences = [mean_difference(tile, reference[:70]) for reference in references]
        assert differences.index(min(differences)) == index, (position, index)


def test_large_frames_are_decoded_small_and_still_match(tmp_path: Path, sheets: Path) -> None:
    """1280x720 frames on 160-pixel tiles are decoded at an eighth of their size: same picture."""
    folder = tmp_path / "files" / "big"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    frames: list[dict[str, Any]] = []
    for index in range(3):
        # Coarse blocks of colour: a picture that any resampling keeps recognisable.
        blocks = rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)
        picture = cv2.resize(blocks, (1280, 720), interpolation=cv2.INTER_NEAREST)
        name = f"frame_{index:06d}.jpg"
        cv2.imwrite(str(folder / name), picture, [cv2.IMWRITE_JPEG_QUALITY, 95])
        frames.append({"index": index, "seconds": index * 0.5, "width": 1280, "height": 720, "file": name})
    write_manifest(folder, {"complete": True, "frames": frames})

    outcome = run_sheet(folder.parent, sheets, AUTOSCENE_FILE="big/manifest.json", SHEET_TILE_WIDTH="160")

    assert outcome.status == 0, outcome.stderr
    sheet = read_image(sheets / "big" / SHEET)
    assert sheet.shape == (90, 480, 3)
    for position, frame in enumerate(frames):
        reference = cv2.resize(read_image(folder / frame["file"]), (160, 90), interpolation=cv2.INTER_AREA)
        tile = tile_of(sheet, position, 3, 160, 90)
        assert mean_difference(tile[:50], reference[:50]) < 8, position


def test_without_a_file_every_manifest_gets_its_sheet(files: Path, sheets: Path) -> None:
    shutil.copytree(files / "clip", files / "day1" / "cam0" / "clip")

    outcome = run_sheet(files, sheets, SHEET_FRAMES="4")

    assert outcome.status == 0, outcome.stderr
    assert outcome.summary["outputs"]["paths"] == [f"clip/{SHEET}", f"day1/cam0/clip/{SHEET}"]
    assert outcome.summary["outputs"]["count"] == 2 and outcome.summary["frames"] == 8
    assert read_image(sheets / "day1" / "cam0" / "clip" / SHEET).shape == (240, 1280, 3)


def test_a_folder_with_no_manifest_is_nothing_to_do(tmp_path: Path, sheets: Path) -> None:
    (tmp_path / "files").mkdir()

    outcome = run_sheet(tmp_path / "files", sheets)

    assert outcome.status == 0, outcome.stderr
    assert "no manifest.json" in outcome.summary["message"]
    assert outcome.summary["outputs"] == {"count": 0, "bytes": 0, "paths": []}


def spoil_json(folder: Path) -> None:
    (folder / "manifest.json").write_text('{"frames": [')


def spoil_list(folder: Path) -> None:
    write_manifest(folder, {**read_manifest(folder), "frames": []})


def spoil_shape(folder: Path) -> None:
    write_manifest(folder, ["frame_000000.jpg"])


def spoil_timestamp(folder: Path) -> None:
    manifest = read_manifest(folder)
    del manifest["frames"][3]["seconds"]
    write_manifest(folder, manifest)


def spoil_escape(folder: Path) -> None:
    manifest = read_manifest(folder)
    manifest["frames"][0]["file"] = "../../etc/passwd"
    write_manifest(folder, manifest)


def remove_last_frame(folder: Path) -> None:
    (folder / "frame_000047.jpg").unlink()  # the last frame is always on the sheet


def garble_a_late_frame(folder: Path) -> None:
    # Found only when the sheet is half drawn: still nothing may be written.
    (folder / "frame_000044.jpg").write_bytes(b"not a JPEG at all")


def remove_manifest(folder: Path) -> None:
    (folder / "manifest.json").unlink()


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (remove_manifest, "clip/manifest.json: no such file"),
        (spoil_json, "clip/manifest.json: not valid JSON"),
        (spoil_shape, 'clip/manifest.json: not a frames manifest (a JSON object with a "frames" list)'),
        (spoil_list, "clip/manifest.json: lists no frames"),
        (spoil_timestamp, 'clip/manifest.json: frames[3] has no timestamp ("seconds")'),
        (
            spoil_escape,
            "clip/manifest.json: frames[0]: file '../../etc/passwd' is outside the manifest's folder",
        ),
        (remove_last_frame, "clip/manifest.json: 1 listed frame file(s) missing: frame_000047.jpg"),
        (garble_a_late_frame, "clip/manifest.json: frame_000044.jpg is not an image"),
    ],
    ids=lambda value: getattr(value, "__name__", "-"),
)
def test_input_that_cannot_work_exits_3_with_one_clear_line_and_writes_nothing(
    files: Path, sheets: Path, spoil: Any, message: str
) -> None:
    spoil(files / "clip")

    outcome = run_sheet(files, sheets, AUTOSCENE_FILE="clip/manifest.json")

    assert outcome.status == 3, outcome.stderr
    assert f"ERROR {message}" in outcome.last_line, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert outcome.summary["message"].startswith(message)
    assert outcome.summary["outputs"] == {"count": 0, "bytes": 0, "paths": []}
    assert outcome.files() == []


def test_a_failure_to_write_exits_1_a_retry_may_cure_it(files: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")

    outcome = run_sheet(files, blocked, AUTOSCENE_FILE="clip/manifest.json")

    assert outcome.status == 1, outcome.stderr
    assert outcome.summary["message"].startswith("clip/manifest.json: cannot read or write: Not a directory")
    assert outcome.summary["outputs"]["count"] == 0


def test_a_folder_named_as_the_file_stands_for_its_manifest(files: Path, sheets: Path) -> None:
    outcome = run_sheet(files, sheets, AUTOSCENE_FILE="clip", SHEET_FRAMES="2")

    assert outcome.status == 0, outcome.stderr
    assert outcome.summary["outputs"]["paths"] == [f"clip/{SHEET}"]


def test_in_a_batch_good_manifests_get_sheets_and_bad_ones_exit_3(files: Path, sheets: Path) -> None:
    shutil.copytree(files / "clip", files / "broken")
    remove_last_frame(files / "broken")

    outcome = run_sheet(files, sheets, SHEET_FRAMES="4")

    assert outcome.status == 3, outcome.stderr
    assert outcome.files() == ["clip", f"clip/{SHEET}"]
    assert outcome.summary["message"] == (
        "1 of 2 contact sheets failed: broken/manifest.json: 1 listed frame file(s) missing: frame_000047.jpg"
    )
    assert outcome.summary["outputs"]["paths"] == [f"clip/{SHEET}"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SHEET_FRAMES", "0"),
        ("SHEET_COLUMNS", "four"),
        ("SHEET_TILE_WIDTH", "20"),
        ("AUTOSCENE_FILE", "../x"),
    ],
)
def test_invalid_settings_exit_2_naming_the_setting(files: Path, sheets: Path, name: str, value: str) -> None:
    outcome = run_sheet(files, sheets, **{"AUTOSCENE_FILE": "clip/manifest.json", name: value})

    assert outcome.status == 2, outcome.stderr
    assert outcome.summary["message"].startswith(f"invalid settings: {name}={value!r}")
    assert outcome.files() == []


def test_the_operator_s_termination_log_variable_wins(files: Path, sheets: Path, tmp_path: Path) -> None:
    outcome = run_sheet(
        files,
        sheets,
        AUTOSCENE_FILE="clip/manifest.json",
        AUTOSCENE_TERMINATION_LOG=str(tmp_path / "from-the-operator.json"),
    )

    assert outcome.status == 0 and outcome.summary == {}
    written = json.loads((tmp_path / "from-the-operator.json").read_text())
    assert written["outputs"]["paths"] == [f"clip/{SHEET}"]


def test_choice_is_evenly_spaced_by_timestamp_and_never_repeats_a_frame() -> None:
    evenly_spaced = program("manifest").evenly_spaced
    steady = [index / 24 for index in range(48)]
    assert evenly_spaced(steady, 16) == expected_choice(steady, 16)
    assert evenly_spaced(steady[:47], 1) == [23]  # the one nearest the middle time
    assert evenly_spaced(steady[:3], 16) == [0, 1, 2]
    # Crowded timestamps, where the nearest frame of two times is the same one: still 4 frames, in order.
    crowded = [0.0, 0.1, 0.2, 5.0, 10.0]
    assert evenly_spaced(crowded, 4) == [0, 2, 3, 4]
    # Variable frame rate: times, not positions, decide.
    uneven = [0.0, 0.1, 0.2, 0.3, 0.4, 3.0, 6.0, 9.0]
    assert evenly_spaced(uneven, 4) == [0, 5, 6, 7]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "00:00:00.000"), (83.456, "00:01:23.456"), (3599.9996, "01:00:00.000"), (-0.04, "-00:00:00.040")],
)
def test_timestamps_are_hours_minutes_seconds_and_milliseconds(seconds: float, text: str) -> None:
    assert program("render").timestamp(seconds) == text
