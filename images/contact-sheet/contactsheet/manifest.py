"""A frames folder's manifest.json: read, checked, and the frames a sheet shows chosen from it."""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST = "manifest.json"


class BadInput(Exception):
    """Input that running again cannot fix: exit status 3."""


@dataclass(frozen=True)
class Frame:
    file: str  # relative to the manifest's folder
    seconds: float  # presentation timestamp, from the start of the video
    index: int | None = None  # the frame's position in the video, when the manifest gives it
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Manifest:
    path: Path
    relative: str  # the manifest's path relative to the input folder
    frames: list[Frame]  # in timestamp order
    complete: bool = True

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def relative_folder(self) -> str:
        parent = PurePosixPath(self.relative).parent.as_posix()
        return "" if parent == "." else parent


def read_manifest(input_folder: Path, relative: str) -> Manifest:
    path = input_folder / relative
    if path.is_dir():
        path, relative = path / MANIFEST, (PurePosixPath(relative) / MANIFEST).as_posix()
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{relative}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{relative}: is a folder, not a manifest") from None
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadInput(f"{relative}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise BadInput(f'{relative}: not a frames manifest (a JSON object with a "frames" list)')
    listed = document.get("frames")
    if not isinstance(listed, list):
        raise BadInput(f'{relative}: not a frames manifest (no "frames" list)')
    if not listed:
        raise BadInput(f"{relative}: lists no frames")
    frames = [parse_frame(relative, position, entry) for position, entry in enumerate(listed)]
    frames.sort(key=lambda frame: frame.seconds)  # stable: equal timestamps keep the manifest's order
    return Manifest(path, relative, frames, complete=document.get("complete") is not False)


def parse_frame(relative: str, position: int, entry: Any) -> Frame:
    where = f"{relative}: frames[{position}]"
    if not isinstance(entry, dict):
        raise BadInput(f"{where} is not an object")
    file, seconds = entry.get("file"), entry.get("seconds")
    if not isinstance(file, str) or not file:
        raise BadInput(f'{where} has no "file"')
    name = PurePosixPath(file)
    if name.is_absolute() or ".." in name.parts:
        raise BadInput(f"{where}: file {file!r} is outside the manifest's folder")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise BadInput(f'{where} has no timestamp ("seconds")')
    return Frame(
        file=file,
        seconds=float(seconds),
        index=whole(entry.get("index")),
        width=whole(entry.get("width")),
        height=whole(entry.get("height")),
    )


def whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def evenly_spaced(seconds: Sequence[float], count: int) -> list[int]:
    """Positions in `seconds` (ascending timestamps) of the `count` frames nearest to `count` evenly
    spaced times from the first timestamp to the last (one frame: the middle time), the earlier frame
    on a tie. Each frame is chosen at most once and in order: the k-th pick is the nearest among the
    frames after the previous pick that leave enough frames for the picks still to come, so there are
    always `count` different frames (every frame when there are no more than `count`)."""
    total = len(seconds)
    if count >= total:
        return list(range(total))
    first, last = seconds[0], seconds[-1]
    if count == 1:
        targets = [(first + last) / 2]
    else:
        targets = [first + (last - first) * k / (count - 1) for k in range(count)]
    chosen: list[int] = []
    for k, target in enumerate(targets):
        low = chosen[-1] + 1 if chosen else 0
        high = total - (count - k)  # the last position this pick may take
        after = bisect_left(seconds, target, low, high + 1)
        candidates = [position for position in (after - 1, after) if low <= position <= high]
        chosen.append(min(candidates, key=lambda position: (abs(seconds[position] - target), position)))
    return chosen


def frame_path(manifest: Manifest, frame: Frame) -> Path:
    return manifest.folder / frame.file


def check_files(manifest: Manifest, frames: Sequence[Frame]) -> None:
    missing = [frame.file for frame in frames if not frame_path(manifest, frame).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise BadInput(f"{manifest.relative}: {len(missing)} listed frame file(s) missing: {shown}")


def find_manifests(input_folder: Path) -> list[str]:
    """Every manifest.json under the input folder, relative to it, in sorted order."""
    if not input_folder.is_dir():
        raise FileNotFoundError(f"input folder {input_folder} is not a folder")
    return sorted(
        path.relative_to(input_folder).as_posix() for path in input_folder.rglob(MANIFEST) if path.is_file()
    )
