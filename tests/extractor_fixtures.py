"""Helpers for the frame-extractor tests: sample clips, running the program, reading its output."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from autoscene.sample_video import make_audio_only_file, make_sample_video

ROOT = Path(__file__).resolve().parent.parent
EXTRACTOR = ROOT / "images" / "frame-extractor" / "extract_frames.py"
SUMMARY_KEYS = {"message", "outputs", "frames", "seconds", "framesPerSecond"}

SMALL: dict[str, Any] = {"width": 160, "height": 120, "frames": 48, "fps": 24}
# Name -> make_sample_video arguments. Small clips: the whole suite makes them in a few seconds.
CLIPS: dict[str, dict[str, Any]] = {
    "clip.mp4": SMALL,
    "gop12.mp4": {**SMALL, "gop": 12},
    "vfr.mp4": {**SMALL, "variable_frame_rate": True},
    "hevc.mp4": {**SMALL, "codec": "hevc"},
    "hevc-10bit.mp4": {**SMALL, "codec": "hevc", "pixel_format": "yuv420p10le"},
    "portrait.mp4": {**SMALL, "rotation": -90},
    "rotated-90.mp4": {**SMALL, "rotation": 90},
    "upside-down.mp4": {**SMALL, "rotation": 180},
    "faststart.mp4": {**SMALL, "gop": 12, "faststart": True},
    "with-audio.mp4": {**SMALL, "with_audio": True},
}


@cache
def extractor(part: str = "main") -> ModuleType:
    """A module of the program's package, `framex.<part>`, imported from the image's folder (the
    package is not installed)."""
    folder = str(EXTRACTOR.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(f"framex.{part}")


class Samples:
    """Makes each sample clip once, then copies it wherever a test wants it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        path = self.folder / name
        if not path.exists():
            if name == "audio-only.mp4":
                make_audio_only_file(path)
            else:
                make_sample_video(path, **CLIPS[name])
        return path

    def copy(self, name: str, folder: Path, as_name: str | None = None) -> Path:
        target = folder / (as_name or name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(name), target)
        return target


@dataclass
class Outcome:
    status: int
    summary: dict[str, Any]
    output: Path
    log: str = ""

    def manifest(self, folder: str) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((self.output / folder / "manifest.json").read_text())
        return manifest

    def images(self, folder: str) -> list[str]:
        return sorted(
            path.name for path in (self.output / folder).iterdir() if path.name.startswith("frame_")
        )

    def indexes(self, folder: str) -> list[int]:
        return [frame["index"] for frame in self.manifest(folder)["frames"]]

    def seconds(self, folder: str) -> list[float]:
        return [frame["seconds"] for frame in self.manifest(folder)["frames"]]


def job_environment(inputs: Path, outputs: Path, **settings: str) -> dict[str, str]:
    return {
        "INPUT_FOLDER": str(inputs),
        "OUTPUT_FOLDER": str(outputs),
        "AUTOSCENE_TERMINATION_LOG": str(outputs.parent / "termination-log.json"),
        **settings,
    }


def read_summary(outputs: Path) -> dict[str, Any]:
    path = outputs.parent / "termination-log.json"
    summary: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return summary


def run_in_process(inputs: Path, outputs: Path, *argv: str, **settings: str) -> Outcome:
    """Runs main() here: quick, for the bulk of the tests."""
    environ = {"PATH": os.environ.get("PATH", ""), **job_environment(inputs, outputs, **settings)}
    previous = signal.getsignal(signal.SIGTERM)
    try:
        status = extractor().main(list(argv), environ)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return Outcome(status, read_summary(outputs), outputs)


def run_as_job(inputs: Path, outputs: Path, *argv: str, **settings: str) -> Outcome:
    """Runs the program the way the Job's container does: `python extract_frames.py`, settings in env."""
    environ = {**os.environ, **job_environment(inputs, outputs, **settings)}
    completed = subprocess.run(
        [sys.executable, str(EXTRACTOR), *argv], env=environ, capture_output=True, text=True, timeout=60
    )
    return Outcome(completed.returncode, read_summary(outputs), outputs, completed.stderr)


def opencv_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame (timestamp in seconds, BGR picture) as OpenCV reads it: the independent reference."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, picture = capture.read()
        if not ok:
            break
        frames.append((capture.get(cv2.CAP_PROP_POS_MSEC) / 1000, picture))
    capture.release()
    return frames


def read_image(path: Path) -> np.ndarray:
    picture = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None, f"{path} is not an image"
    return picture


def mean_difference(first: np.ndarray, second: np.ndarray) -> float:
    assert first.shape == second.shape, (first.shape, second.shape)
    return float(np.abs(first.astype(np.int16) - second.astype(np.int16)).mean())


def trim_edit_list(path: Path, seconds: float) -> Path:
    """Sets the duration of the first edit-list segment (`elst`) to `seconds`, as lossless trimming
    tools do: the samples stay in the file, the edit list hides those past the new end (ISO/IEC
    14496-12, 8.6.6). The movie's timescale (`mvhd`) gives the unit."""
    data = bytearray(path.read_bytes())
    header = data.find(b"mvhd")
    timescale_at = header + (16 if data[header + 4] == 0 else 24)
    timescale = int.from_bytes(data[timescale_at : timescale_at + 4], "big")
    edits = data.find(b"elst")
    assert header > 0 and edits > 0, "no movie header or edit list"
    width = 4 if data[edits + 4] == 0 else 8
    data[edits + 12 : edits + 12 + width] = round(seconds * timescale).to_bytes(width, "big")
    path.write_bytes(bytes(data))
    return path


def ffmpeg_frame_count(path: Path, stream: str | None = "0:v:0") -> int:
    """How many frames the ffmpeg command decodes from a video stream (`-map` syntax; None: the one
    ffmpeg picks itself), errors and all."""
    choice = ["-map", stream] if stream else ["-an", "-sn", "-dn"]
    command = ["ffmpeg", "-v", "quiet", "-i", str(path), *choice, "-fps_mode", "passthrough"]
    listing = subprocess.run([*command, "-f", "framemd5", "-"], capture_output=True, text=True, timeout=60)
    return sum(1 for line in listing.stdout.splitlines() if line and not line.startswith("#"))
