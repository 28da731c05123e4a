"""Settings: environment variables and command-line flags, checked before any work."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import framex
from framex.limits import Limits, limits_from

MODES = ("all", "every-nth", "fps", "keyframes")
FORMATS = {"jpeg": "jpg", "png": "png"}
# Quality 90 from the decoder's own YUV planes measures a higher luma PSNR than OpenCV's BGR round
# trip at quality 95 (see bench/frames.py), with smaller files.
DEFAULT_QUALITY = 90


class UsageError(Exception):
    """Invalid settings: exit status 2."""


@dataclass(frozen=True)
class Selection:
    mode: str = "all"
    every_n: int | None = None
    fps: float | None = None
    start: float = 0.0
    end: float | None = None
    max_frames: int | None = None


@dataclass(frozen=True)
class ImageOptions:
    format: str = "jpeg"
    quality: int = DEFAULT_QUALITY
    max_width: int | None = None
    max_height: int | None = None

    @property
    def extension(self) -> str:
        return FORMATS[self.format]


@dataclass(frozen=True)
class Settings:
    input_folder: Path
    output_folder: Path
    file: str | None
    termination_log: Path
    selection: Selection
    image: ImageOptions
    workers: int
    limits: Limits
    stream: int | None = None  # the video stream's index in the file; None: the one ffmpeg picks


@dataclass(frozen=True)
class Option:
    name: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    help: str


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def stream_index(text: str) -> int:
    value = whole_number(text)
    if value < 0:
        raise ValueError("must be a stream index, 0 or more (as ffprobe lists the streams)")
    return value


def seconds_value(text: str) -> float:
    value = number(text)
    if value < 0:
        raise ValueError("must be a number of seconds, 0 or more")
    return value


def positive_number(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise ValueError("must be a number above 0")
    return value


def jpeg_quality(text: str) -> int:
    value = whole_number(text)
    if not 1 <= value <= 100:
        raise ValueError("must be a whole number from 1 to 100")
    return value


def one_of(choices: Iterable[str]) -> Callable[[str], str]:
    allowed = tuple(choices)

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def relative_video_path(text: str) -> str:
    path = Path(text)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError("must be a path inside INPUT_FOLDER, relative to it")
    return text


OPTIONS = (
    Option("input-folder", "INPUT_FOLDER", Path, Path("/cos/files"), "folder holding the videos"),
    Option("output-folder", "OUTPUT_FOLDER", Path, Path("/cos/outputs"), "folder receiving the images"),
    Option("file", "AUTOSCENE_FILE", relative_video_path, None, "video to process, relative to the input"),
    Option(
        "termination-log",
        "AUTOSCENE_TERMINATION_LOG",
        Path,
        Path("/dev/termination-log"),
        "JSON summary file",
    ),
    Option("mode", "EXTRACT_MODE", one_of(MODES), "all", "which frames: " + " | ".join(MODES)),
    Option("every-n", "EXTRACT_EVERY_N", positive_int, None, "every-nth mode: keep frames 0, N, 2N..."),
    Option("fps", "EXTRACT_FPS", positive_number, None, "fps mode: frames per second wanted"),
    Option("start", "EXTRACT_START", seconds_value, 0.0, "skip frames before this second"),
    Option("end", "EXTRACT_END", seconds_value, None, "stop before this second"),
    Option("max-frames", "EXTRACT_MAX_FRAMES", positive_int, None, "stop after this many images per video"),
    Option("format", "EXTRACT_FORMAT", one_of(FORMATS), "jpeg", "image format: jpeg | png"),
    Option("quality", "EXTRACT_QUALITY", jpeg_quality, DEFAULT_QUALITY, "JPEG quality, 1-100"),
    Option("max-width", "EXTRACT_MAX_WIDTH", positive_int, None, "shrink wider images to this width"),
    Option("max-height", "EXTRACT_MAX_HEIGHT", positive_int, None, "shrink taller images to this height"),
    Option("stream", "EXTRACT_STREAM", stream_index, None, "video stream index (default: ffmpeg's choice)"),
    Option("workers", "EXTRACT_WORKERS", positive_int, None, "image encoding threads (default: CPUs)"),
)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit on its own; the summary comes first
        raise UsageError(message)


def argument_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="extract_frames.py",
        description=(framex.__doc__ or "").split("\n\n", 1)[0],
        epilog=(framex.__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for option in OPTIONS:
        default = "" if option.default is None else f" (default {option.default})"
        parser.add_argument(f"--{option.name}", metavar=option.env, help=f"{option.help}{default}")
    return parser


def read_settings(argv: Sequence[str] | None, environ: dict[str, str]) -> Settings:
    values = resolve_options(argument_parser().parse_args(argv), environ)
    selection = Selection(
        mode=values["mode"],
        every_n=values["every-n"],
        fps=values["fps"],
        start=values["start"],
        end=values["end"],
        max_frames=values["max-frames"],
    )
    check_selection(selection)
    limits = limits_from(environ)
    return Settings(
        input_folder=values["input-folder"],
        output_folder=values["output-folder"],
        file=values["file"],
        termination_log=values["termination-log"],
        selection=selection,
        image=ImageOptions(values["format"], values["quality"], values["max-width"], values["max-height"]),
        workers=values["workers"] or limits.cpus,
        limits=limits,
        stream=values["stream"],
    )


def resolve_options(arguments: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    values = {}
    for option in OPTIONS:
        flag_value = getattr(arguments, option.name.replace("-", "_"))
        if flag_value is not None:
            raw, source = flag_value, f"--{option.name}"
        else:  # an empty variable counts as unset; no stripping: file names may end in a space
            raw, source = environ.get(option.env) or None, option.env
        try:
            values[option.name] = option.default if raw is None else option.parse(raw)
        except ValueError as error:
            raise UsageError(f"{source}={raw!r}: {error}") from None
    return values


def check_selection(selection: Selection) -> None:
    if selection.mode == "every-nth" and selection.every_n is None:
        raise UsageError("EXTRACT_MODE=every-nth needs EXTRACT_EVERY_N (--every-n)")
    if selection.mode == "fps" and selection.fps is None:
        raise UsageError("EXTRACT_MODE=fps needs EXTRACT_FPS (--fps)")
    if selection.end is not None and selection.end <= selection.start:
        raise UsageError(f"EXTRACT_END ({selection.end}) must be after EXTRACT_START ({selection.start})")


def termination_log_path(argv: Sequence[str] | None, environ: dict[str, str]) -> Path:
    """Where the summary goes, found even when the other settings are invalid."""
    parser = ArgumentParser(add_help=False)
    parser.add_argument("--termination-log")
    try:
        flag = parser.parse_known_args(argv)[0].termination_log
    except UsageError:
        flag = None
    return Path(flag or environ.get("AUTOSCENE_TERMINATION_LOG") or "/dev/termination-log")
