"""Extract the frames of MP4 videos into JPEG or PNG images.

Each video VIDEO.mp4 gets a folder OUTPUT_FOLDER/VIDEO/ (the video's path relative to INPUT_FOLDER,
without its extension) holding frame_<index>.jpg images, where <index> (six digits) is the frame's
position in the video counting from 0, and a manifest.json that lists every image (frame index,
timestamp in seconds from the start of the video, width, height, file name) and describes the video
(source, codec, fps, mode, complete, error). Images of an earlier run in that folder are removed
first; the manifest is written next, marked incomplete, and rewritten at the end, so an interrupted
run never leaves images without a manifest saying so.

At exit a JSON summary (at most 4096 bytes) goes to the termination log:
  {"message": ..., "outputs": {"count": ..., "bytes": ..., "paths": [...]},
   "frames": ..., "seconds": ..., "framesPerSecond": ...}

Settings: an environment variable, or the command-line flag beside it, which wins.
  INPUT_FOLDER               --input-folder     folder holding the videos (default /cos/files)
  OUTPUT_FOLDER              --output-folder    folder receiving the images (default /cos/outputs)
  AUTOSCENE_FILE             --file             the video to process, relative to INPUT_FOLDER;
                                                unset: every *.mp4 under INPUT_FOLDER, recursively,
                                                in sorted order
  AUTOSCENE_TERMINATION_LOG  --termination-log  where the summary goes (default /dev/termination-log)
  EXTRACT_MODE               --mode             all (default) | every-nth | fps | keyframes
  EXTRACT_EVERY_N            --every-n          every-nth mode: keep frames 0, N, 2N, ...
  EXTRACT_FPS                --fps              fps mode: frames per second wanted; the frame nearest
                                                each multiple of 1/FPS seconds is kept
  EXTRACT_START              --start            skip frames before this second (default 0)
  EXTRACT_END                --end              stop before this second (default: the end)
  EXTRACT_MAX_FRAMES         --max-frames       stop after this many images per video
  EXTRACT_FORMAT             --format           jpeg (default) | png
  EXTRACT_QUALITY            --quality          JPEG quality, 1-100 (default 90)
  EXTRACT_MAX_WIDTH          --max-width        shrink wider images to this width, keeping the aspect
  EXTRACT_MAX_HEIGHT         --max-height       shrink taller images to this height, likewise
  EXTRACT_WORKERS            --workers          image encoding threads (default: CPUs available)

The keyframes mode decodes key frames only, so it is many times faster than the others. Images come
out upright: the rotation stored in the video (portrait phone clips) is applied. A file name that
starts with a dash is given as --file=-name.mp4.

Exit status: 0 success, 1 a video could not be read (fully), 2 invalid settings, 143 terminated.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import simplejpeg

log = logging.getLogger("extract_frames")

MODES = ("all", "every-nth", "fps", "keyframes")
FORMATS = {"jpeg": "jpg", "png": "png"}
# Quality 90 from the decoder's own YUV planes measures a higher luma PSNR than OpenCV's BGR round
# trip at quality 95 (see bench/frames.py), with smaller files.
DEFAULT_QUALITY = 90
TERMINATION_LOG_LIMIT = 4096
SUMMARY_PATHS = 5
PROGRESS_INTERVAL_SECONDS = 5.0
IN_FLIGHT_BYTES = 48 * 2**20  # decoded frames waiting to be encoded, at most (past a minimum count)
# Above this many pixels (1080p), each decoding thread's own pictures weigh: one thread fewer.
LARGE_FRAME_PIXELS = 1920 * 1088
FRAME_FILE = re.compile(r"frame_\d{6,}\.(jpg|png)")
MANIFEST = "manifest.json"
PARTIAL_MANIFEST = ".manifest.json.partial"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TERMINATED = 0, 1, 2, 128 + signal.SIGTERM

# Video luma spans 16-235 and chroma 16-240, JPEG uses 0-255 for both: without this stretch the
# images come out washed out and measurably worse.
LUMA_TO_FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
CHROMA_TO_FULL_RANGE = np.clip(np.round((np.arange(256) - 128) * 255 / 224 + 128), 0, 255).astype(np.uint8)
# Formats whose planes go to the JPEG encoder as they are; others are converted to 8-bit 4:2:0 first.
PLANAR_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray"}
FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p"}
AV_COLOR_RANGE_JPEG = 2


class UsageError(Exception):
    """Invalid settings: exit status 2."""


class Terminated(Exception):
    """SIGTERM arrived (the Job is being stopped): finish the manifest and leave."""


# Set by the SIGTERM handler, checked between packets: stopping at that point, rather than wherever
# the signal lands, never loses track of an image already handed to the encoding threads.
STOP_REQUESTED = threading.Event()


# ----------------------------------------------------------------------------------------- settings


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
    cpus: int


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


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a container's limit)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


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
    Option("workers", "EXTRACT_WORKERS", positive_int, None, "image encoding threads (default: CPUs)"),
)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit on its own; the summary comes first
        raise UsageError(message)


def argument_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="extract_frames.py",
        description=(__doc__ or "").split("\n\n", 1)[0],
        epilog=(__doc__ or "").split("\n\n", 1)[-1],
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
    cpus = available_cpus()
    return Settings(
        input_folder=values["input-folder"],
        output_folder=values["output-folder"],
        file=values["file"],
        termination_log=values["termination-log"],
        selection=selection,
        image=ImageOptions(values["format"], values["quality"], values["max-width"], values["max-height"]),
        workers=values["workers"] or cpus,
        cpus=cpus,
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


# ----------------------------------------------------------------------------------- frame choice


@dataclass
class Candidate:
    """A decoded frame with its place in the video."""

    frame: av.VideoFrame
    index: int
    seconds: float


class FramePositions:
    """Numbers frames by presentation order, counting every packet read, decoded or not.

    Packets arrive in decode order; a frame's number is how many packets have an earlier timestamp.
    Frames come out of the decoder in presentation order, so a small heap of timestamps suffices.
    """

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.passed = 0
        self.last = -1

    def saw_packet(self, pts: int | None) -> None:
        if pts is not None:
            heapq.heappush(self.pending, pts)

    def position_of(self, pts: int | None) -> int:
        if pts is None:
            self.last += 1
            return self.last
        while self.pending and self.pending[0] < pts:
            heapq.heappop(self.pending)
            self.passed += 1
        self.last = self.passed
        if self.pending and self.pending[0] == pts:
            heapq.heappop(self.pending)
            self.passed += 1
        return self.last


class Chooser:
    """Keeps every frame offered: the all and keyframes modes (the decoder already skips the rest)."""

    def offer(self, candidate: Candidate) -> list[Candidate]:
        return [candidate]

    def finish(self, limit_seconds: float) -> list[Candidate]:
        return []


class EveryNth(Chooser):
    def __init__(self, n: int) -> None:
        self.n = n

    def offer(self, candidate: Candidate) -> list[Candidate]:
        return [candidate] if candidate.index % self.n == 0 else []


class NearestToRate(Chooser):
    """For each multiple of 1/rate seconds, the frame whose timestamp is nearest (the earlier on a tie).

    Works on timestamps, so variable frame rate videos are sampled evenly in time. A frame is never
    kept twice, even when the rate asked exceeds the video's.
    """

    def __init__(self, rate: float, start: float) -> None:
        self.rate = rate
        self.step = math.ceil(start * rate - 1e-9)
        self.previous: Candidate | None = None
        self.last_kept: Candidate | None = None

    @property
    def target(self) -> float:
        return self.step / self.rate

    def offer(self, candidate: Candidate) -> list[Candidate]:
        kept = []
        while candidate.seconds >= self.target:
            earlier = self.previous
            if earlier is not None and self.target - earlier.seconds <= candidate.seconds - self.target:
                kept += self._keep(earlier)
            else:
                kept += self._keep(candidate)
            self.step += 1
        self.previous = candidate
        return kept

    def finish(self, limit_seconds: float) -> list[Candidate]:
        """The video (or the range) ends before `limit_seconds`: the last frame may still be nearest."""
        if self.previous is not None and self.target < limit_seconds - 1e-6:  # the end is exclusive
            return self._keep(self.previous)
        return []

    def _keep(self, candidate: Candidate) -> list[Candidate]:
        if candidate is self.last_kept:
            return []
        self.last_kept = candidate
        return [candidate]


def chooser_for(selection: Selection) -> Chooser:
    if selection.mode == "every-nth" and selection.every_n is not None:
        return EveryNth(selection.every_n)
    if selection.mode == "fps" and selection.fps is not None:
        return NearestToRate(selection.fps, selection.start)
    return Chooser()


class StartGate:
    """Holds back packets until the range's start: decoding begins at the last key frame before it.

    Reading from the beginning (rather than seeking) is what lets every frame keep its real number.
    """

    def __init__(self, start_pts: int | None) -> None:
        self.start_pts = start_pts
        self.group: list[av.Packet] = []

    def admit(self, packet: av.Packet) -> list[av.Packet]:
        if self.start_pts is None:
            return [packet]
        if packet.is_keyframe:
            self.group = []
        self.group.append(packet)
        if packet.pts is None or packet.pts < self.start_pts:
            return []
        self.start_pts = None
        group, self.group = self.group, []
        return group


# ------------------------------------------------------------------------------------------ images


@dataclass(frozen=True)
class FrameRecord:
    index: int
    seconds: float
    width: int
    height: int
    file: str
    bytes: int


def upright_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    return (height, width) if rotation % 180 else (width, height)


def scaled_size(width: int, height: int, options: ImageOptions) -> tuple[int, int]:
    """The size after shrinking to fit the maximum width and height, keeping the aspect ratio."""
    scale = min(
        1.0,
        (options.max_width or width) / width,
        (options.max_height or height) / height,
    )
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def stored_size(frame: av.VideoFrame, rotation: int, options: ImageOptions) -> tuple[int, int]:
    """The size to shrink the stored (unrotated) picture to, so that the upright image fits."""
    upright = upright_size(frame.width, frame.height, rotation)
    return upright_size(*scaled_size(*upright, options), rotation)


def rotation_of(frame: av.VideoFrame) -> int:
    """Counter-clockwise degrees to turn the stored picture upright: 0, 90, 180 or 270."""
    return round((frame.rotation or 0) / 90) % 4 * 90


ROTATE_COUNTER_CLOCKWISE = {
    90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_CLOCKWISE,
}


def rotate(plane: np.ndarray, rotation: int) -> np.ndarray:
    return cv2.rotate(plane, ROTATE_COUNTER_CLOCKWISE[rotation]) if rotation else plane


def plane_view(frame: av.VideoFrame, number: int, width: int, height: int) -> np.ndarray:
    """A plane of the decoded frame as an array, without copying (rows may carry padding)."""
    plane = frame.planes[number]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[:height, :width]


def yuv_planes(frame: av.VideoFrame) -> tuple[list[np.ndarray], bool]:
    """The 8-bit Y, U, V planes of a frame (only Y for grey video) and whether they are full range."""
    if frame.format.name not in PLANAR_FORMATS:
        frame = frame.reformat(format="yuv420p")
    name = frame.format.name
    full_range = name in FULL_RANGE_FORMATS or frame.color_range == AV_COLOR_RANGE_JPEG
    luma = plane_view(frame, 0, frame.width, frame.height)
    if name == "gray":
        return [luma], full_range
    chroma_width = frame.width if name.endswith("444p") else (frame.width + 1) // 2
    chroma_height = (frame.height + 1) // 2 if name.endswith("420p") else frame.height
    chroma = [plane_view(frame, number, chroma_width, chroma_height) for number in (1, 2)]
    return [luma, *chroma], full_range


def resize_planes(planes: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    luma = planes[0]
    if (luma.shape[1], luma.shape[0]) == (width, height):
        return planes
    resized = [cv2.resize(luma, (width, height), interpolation=cv2.INTER_AREA)]
    for chroma in planes[1:]:
        across = round(luma.shape[1] / chroma.shape[1])
        down = round(luma.shape[0] / chroma.shape[0])
        size = (-(-width // across), -(-height // down))
        resized.append(cv2.resize(chroma, size, interpolation=cv2.INTER_AREA))
    return resized


def encode_jpeg(frame: av.VideoFrame, options: ImageOptions) -> tuple[bytes, int, int]:
    """JPEG straight from the decoder's YUV planes: no colour conversion, no RGB round trip."""
    rotation = rotation_of(frame)
    planes, full_range = yuv_planes(frame)
    planes = resize_planes(planes, *stored_size(frame, rotation, options))
    if not full_range:
        tables = (LUMA_TO_FULL_RANGE, CHROMA_TO_FULL_RANGE, CHROMA_TO_FULL_RANGE)
        planes = [cv2.LUT(plane, table) for plane, table in zip(planes, tables, strict=False)]
    planes = [rotate(plane, rotation) for plane in planes]
    luma = planes[0]
    chroma = planes[1:] if len(planes) == 3 else [None, None]
    data = simplejpeg.encode_jpeg_yuv_planes(luma, chroma[0], chroma[1], quality=options.quality)
    return data, luma.shape[1], luma.shape[0]


def encode_png(frame: av.VideoFrame, options: ImageOptions) -> tuple[bytes, int, int]:
    rotation = rotation_of(frame)
    picture: np.ndarray = frame.to_ndarray(format="bgr24")
    width, height = stored_size(frame, rotation, options)
    if (width, height) != (frame.width, frame.height):
        picture = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
    picture = rotate(picture, rotation)
    ok, data = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes(), picture.shape[1], picture.shape[0]


def write_image(candidate: Candidate, folder: Path, options: ImageOptions) -> FrameRecord:
    """Runs on the encoding threads; OpenCV and libjpeg-turbo release the GIL while they work."""
    encode = encode_jpeg if options.format == "jpeg" else encode_png
    data, width, height = encode(candidate.frame, options)
    name = f"frame_{candidate.index:06d}.{options.extension}"
    with open(folder / name, "wb") as image:
        image.write(data)
    return FrameRecord(candidate.index, round(candidate.seconds, 6), width, height, name, len(data))


# ------------------------------------------------------------------------------------------ videos


@dataclass
class VideoResult:
    source: str
    folder: str
    frames: list[FrameRecord] = field(default_factory=list)
    manifest_bytes: int = 0
    error: str | None = None
    seconds: float = 0.0
    decoded: int = 0
    video: dict[str, Any] = field(default_factory=dict)  # codec, size, fps, duration

    @property
    def files(self) -> int:
        return len(self.frames) + (1 if self.manifest_bytes else 0)

    @property
    def bytes(self) -> int:
        return sum(frame.bytes for frame in self.frames) + self.manifest_bytes


class VideoError(Exception):
    """The video cannot be read at all."""


def describe(error: BaseException) -> str:
    """The most telling words of an FFmpeg or OS error: FFmpeg's last log line when there is one."""
    logged = getattr(error, "log", None)
    if logged and len(logged) > 2 and str(logged[2]).strip():
        return str(logged[2]).strip()
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


@contextmanager
def ffmpeg_messages() -> Iterator[None]:
    """Lets FFmpeg's error messages through, for the words of an exception ("moov atom not found").

    Only while opening: FFmpeg's log hook takes the GIL, and a decoder thread logging while its codec
    context is being freed (which holds the GIL) would deadlock.
    """
    av.logging.set_level(av.logging.ERROR)
    try:
        yield
    finally:
        av.logging.set_level(None)


def open_video(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError("no such file")
    if path.is_dir():
        raise VideoError("is a folder, not a video")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        with ffmpeg_messages():
            # An absolute path: a name such as "http:clip.mp4" must not be taken for a URL.
            return av.open(str(path.absolute()), mode="r")
    except (av.FFmpegError, OSError) as error:
        if isinstance(error, PermissionError):
            raise VideoError("permission denied") from None
        raise VideoError(f"not a readable video ({describe(error)})") from None


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    attached = av.stream.Disposition.attached_pic
    for stream in container.streams.video:
        if not stream.disposition & attached:  # cover art is not the video
            return stream
    kinds = ", ".join(sorted({str(stream.type) for stream in container.streams})) or "none"
    raise VideoError(f"no video stream (streams: {kinds})")


class Timeline:
    """Seconds from the start of the video, from a frame's timestamp."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self.time_base = float(stream.time_base or 0)
        self.origin = stream.start_time
        self.rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        self.last = -1.0

    def seconds(self, pts: int | None) -> float:
        if pts is None or not self.time_base:
            self.last += 1 / (self.rate or 25)
            return self.last
        if self.origin is None:
            self.origin = pts
        self.last = (pts - self.origin) * self.time_base
        return self.last

    def ticks(self, seconds: float) -> int:
        return round(seconds / self.time_base) + (self.origin or 0)

    def frame_duration(self, frame: av.VideoFrame) -> float:
        if frame.duration and self.time_base:
            return frame.duration * self.time_base
        return 1 / self.rate if self.rate else 0.0


class Damage:
    """Where the video first stopped decoding cleanly, for the error message."""

    def __init__(self) -> None:
        self.after_seconds: float | None = None
        self.what = ""

    def note(self, what: str, after_seconds: float) -> None:
        if self.after_seconds is None:
            self.after_seconds, self.what = after_seconds, what

    @property
    def found(self) -> bool:
        return self.after_seconds is not None


def frames_in_flight(frame: av.VideoFrame, workers: int) -> int:
    """How many decoded frames may wait for the encoding threads: enough that they never run dry
    (4 x workers + 4 up to 1080p), few enough that memory stays bounded (workers + 1 at 4K)."""
    frame_bytes = sum(plane.buffer_size for plane in frame.planes)
    return max(workers + 1, min(4 * workers + 4, IN_FLIGHT_BYTES // max(1, frame_bytes)))


class Extraction:
    """Decodes one video on this thread while a pool of threads encodes and writes the images.

    A bounded number of frames wait for the pool (`frames_in_flight`), which bounds memory.
    """

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        folder: Path,
        settings: Settings,
        pool: ThreadPoolExecutor,
        name: str,
    ) -> None:
        self.container, self.stream, self.folder, self.pool = container, stream, folder, pool
        self.name, self.selection, self.image = name, settings.selection, settings.image
        self.workers = settings.workers
        self.in_flight_limit = 0  # set from the first frame's size
        self.timeline = Timeline(stream)
        self.positions = FramePositions()
        self.chooser = chooser_for(self.selection)
        self.gate = StartGate(self.timeline.ticks(self.selection.start) if self.selection.start else None)
        self.keyframes_only = self.selection.mode == "keyframes"
        self.damage = Damage()
        self.in_flight: deque[Future[FrameRecord]] = deque()
        self.records: list[FrameRecord] = []
        self.packets_read = self.packets_decoded = self.frames_decoded = self.kept = 0
        self.last_good: Candidate | None = None
        self.next_index = 0
        self.started = self.last_progress = time.monotonic()

    def run(self) -> None:
        try:
            self._read_packets()
        except av.FFmpegError as error:  # the demuxer cannot go on: keep what was decoded
            self.damage.note(f"read error: {describe(error)}", self._last_good_seconds())
        finally:
            self._collect(until=0)

    def _read_packets(self) -> None:
        for packet in self.container.demux(self.stream):
            if packet.size == 0:  # end-of-stream marker; the decoder is flushed below
                continue
            if not self._read(packet):
                return  # past the range's end, or enough frames
        if self._decode(None):
            self._check_complete()

    def _read(self, packet: av.Packet) -> bool:
        if STOP_REQUESTED.is_set():
            raise Terminated()
        self.packets_read += 1
        if not packet.is_discard:  # decoded for reference only, never shown: it has no frame number
            self.positions.saw_packet(packet.pts)
        if self.keyframes_only and not packet.is_keyframe:
            return True
        for admitted in self.gate.admit(packet):
            if not self._decode(admitted):
                return False
        return True

    def _decode(self, packet: av.Packet | None) -> bool:
        try:
            frames = self.stream.decode(packet)
        except av.error.EOFError:
            return True
        except av.FFmpegError as error:
            self.damage.note(f"undecodable data ({describe(error)})", self._last_good_seconds())
            return True
        if packet is not None and not packet.is_discard:
            self.packets_decoded += 1
        for frame in frames:
            if not self._take(frame):
                return False
        return True

    def _take(self, frame: av.VideoFrame) -> bool:
        """Handles one decoded frame; False once no later frame is wanted."""
        self.frames_decoded += 1
        self._report_progress()
        candidate = Candidate(frame, self.positions.position_of(frame.pts), self.timeline.seconds(frame.pts))
        if frame.is_corrupt:
            self.damage.note("damaged frame", self._last_good_seconds())
            return True
        if not self.keyframes_only and self.last_good is not None and candidate.index > self.next_index:
            self.damage.note("frames missing", self._last_good_seconds())
        self.last_good, self.next_index = candidate, candidate.index + 1
        if candidate.seconds < self.selection.start:
            return True
        if self.selection.end is not None and candidate.seconds >= self.selection.end:
            self._submit_all(self.chooser.finish(self.selection.end))
            return False
        self._submit_all(self.chooser.offer(candidate))
        return not self._has_enough()

    def _submit_all(self, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            if self._has_enough():
                return
            if not self.in_flight_limit:
                self.in_flight_limit = frames_in_flight(candidate.frame, self.workers)
            self._collect(until=self.in_flight_limit - 1)
            self.in_flight.append(self.pool.submit(write_image, candidate, self.folder, self.image))
            self.kept += 1

    def _has_enough(self) -> bool:
        return self.selection.max_frames is not None and self.kept >= self.selection.max_frames

    def _collect(self, until: int) -> None:
        """Waits for the oldest images until at most `until` remain in flight."""
        while len(self.in_flight) > until:
            self.records.append(self.in_flight[0].result())
            self.in_flight.popleft()

    def _check_complete(self) -> None:
        """After the last packet: did the file hold every frame it announces, and did all decode?"""
        if self.last_good is not None:
            end = self.last_good.seconds + self.timeline.frame_duration(self.last_good.frame)
            self._submit_all(self.chooser.finish(min(end, self.selection.end or math.inf)))
        announced = self.stream.frames
        if not self.packets_read:
            self.damage.note("no frames in its video stream", 0.0)
        elif announced and self.packets_read < announced:
            self.damage.note(
                f"truncated: {self.packets_read} of {announced} frames present", self._last_good_seconds()
            )
        elif self.packets_decoded > self.frames_decoded and not self.damage.found:
            self.damage.note("frames missing", self._last_good_seconds())

    def _last_good_seconds(self) -> float:
        return self.last_good.seconds if self.last_good is not None else 0.0

    def _report_progress(self) -> None:
        now = time.monotonic()
        if now - self.last_progress < PROGRESS_INTERVAL_SECONDS:
            return
        self.last_progress = now
        elapsed = now - self.started
        log.info(
            "%s: %d frames decoded, %d images, at %.1f s of the video, %.0f frames/s",
            self.name,
            self.frames_decoded,
            self.kept,
            self._last_good_seconds(),
            self.frames_decoded / elapsed,
        )

    def failure(self) -> str | None:
        if not self.damage.found:
            return None
        if not self.records:
            return f"not a readable video ({self.damage.what})"
        kind = "truncated" if self.damage.what.startswith("truncated") else "corrupt"
        return f"{kind} after {self.damage.after_seconds:.2f} s (extracted {len(self.records)} frames)"


def prepare_folder(folder: Path) -> None:
    """Creates the video's output folder and clears images of an earlier run, so the folder matches
    its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if FRAME_FILE.fullmatch(old.name) or old.name in (MANIFEST, PARTIAL_MANIFEST):
            old.unlink()


def describe_video(stream: av.video.stream.VideoStream) -> dict[str, Any]:
    rate = stream.average_rate or stream.guessed_rate
    duration = stream.duration * stream.time_base if stream.duration and stream.time_base else None
    return {
        "codec": stream.codec_context.name,
        "width": stream.codec_context.width,
        "height": stream.codec_context.height,
        "fps": round(float(rate), 6) if rate else None,
        "durationSeconds": round(float(duration), 6) if duration is not None else None,
    }


def manifest_document(result: VideoResult, settings: Settings, complete: bool) -> dict[str, Any]:
    selection, image = settings.selection, settings.image
    return {
        "source": result.source,
        **result.video,
        "mode": selection.mode,
        "everyN": selection.every_n,
        "targetFps": selection.fps,
        "startSeconds": selection.start,
        "endSeconds": selection.end,
        "maxFrames": selection.max_frames,
        "format": image.format,
        "quality": image.quality if image.format == "jpeg" else None,
        "maxWidth": image.max_width,
        "maxHeight": image.max_height,
        "complete": complete,
        "error": result.error,
        "decodedFrames": result.decoded,
        "frameCount": len(result.frames),
        "frames": [
            {"index": f.index, "seconds": f.seconds, "width": f.width, "height": f.height, "file": f.file}
            for f in result.frames
        ],
    }


def write_manifest(folder: Path, document: dict[str, Any]) -> int:
    """Writes manifest.json whole or not at all (rename over the old one); returns its size."""
    data = json.dumps(document, ensure_ascii=False, indent=1).encode()
    partial = folder / PARTIAL_MANIFEST
    partial.write_bytes(data)
    os.replace(partial, folder / MANIFEST)
    return len(data)


def extract_video(source: Path, relative: str, settings: Settings, pool: ThreadPoolExecutor) -> VideoResult:
    started = time.monotonic()
    result = VideoResult(source=relative, folder=Path(relative).with_suffix("").as_posix())
    folder = settings.output_folder / result.folder
    prepared = False
    try:
        with open_video(source) as container:
            stream = video_stream(container)
            result.video = describe_video(stream)
            configure_decoder(stream, settings)
            prepare_folder(folder)
            prepared = True
            result.manifest_bytes = write_manifest(folder, manifest_document(result, settings, False))
            extraction = Extraction(container, stream, folder, settings, pool, relative)
            try:
                extraction.run()
            finally:
                result.frames, result.decoded = extraction.records, extraction.frames_decoded
            result.error = extraction.failure()
    except VideoError as error:
        result.error = str(error)
    except Terminated:
        result.error = f"stopped by SIGTERM (extracted {len(result.frames)} frames)"
    except OSError as error:
        result.error = f"cannot write images: {describe(error)} ({error.filename or folder})"
    except Exception as error:  # one broken video must not cost the others their results
        log.exception("%s: unexpected error", relative)
        result.error = f"unexpected error: {describe(error)}"
    finally:
        result.seconds = time.monotonic() - started
        if prepared:
            finish_manifest(folder, result, settings)
    return result


def finish_manifest(folder: Path, result: VideoResult, settings: Settings) -> None:
    try:
        document = manifest_document(result, settings, complete=result.error is None)
        result.manifest_bytes = write_manifest(folder, document)
    except OSError as error:
        log.error("%s: cannot write the manifest: %s", result.source, describe(error))
        result.error = result.error or f"cannot write the manifest: {describe(error)}"


def configure_decoder(stream: av.video.stream.VideoStream, settings: Settings) -> None:
    context = stream.codec_context
    context.thread_type = "AUTO"  # frame threads, or slice threads where frames cannot be threaded
    # FFmpeg's own default counts the node's CPUs, not the container's share: on a large node that
    # would mean a dozen frame threads, each holding frames in memory, fighting over a CPU or two.
    large = context.width * context.height > LARGE_FRAME_PIXELS
    context.thread_count = settings.cpus if large else settings.cpus + 1
    if settings.selection.mode == "keyframes":
        context.skip_frame = "NONKEY"


def find_videos(settings: Settings) -> list[tuple[Path, str]]:
    """(path, path relative to the input folder) of each video to process."""
    if settings.file is not None:
        return [(settings.input_folder / settings.file, settings.file)]
    if not settings.input_folder.is_dir():
        raise VideoError(f"input folder {settings.input_folder} is not a folder")
    found = [path for path in settings.input_folder.rglob("*") if path.suffix.lower() == ".mp4"]
    relative = sorted(path.relative_to(settings.input_folder).as_posix() for path in found if path.is_file())
    return [(settings.input_folder / name, name) for name in relative]


# ----------------------------------------------------------------------------------------- summary


@dataclass
class Run:
    results: list[VideoResult]
    seconds: float
    failure: str | None = None  # what stopped the run before any video
    note: str | None = None  # why there was nothing to do
    stopped: bool = False  # by SIGTERM

    @property
    def frames(self) -> int:
        return sum(len(result.frames) for result in self.results)

    @property
    def failed(self) -> list[VideoResult]:
        return [result for result in self.results if result.error]

    @property
    def exit_status(self) -> int:
        if self.stopped:
            return EXIT_TERMINATED
        return EXIT_FAILED if self.failure or self.failed else EXIT_OK


def frames_per_second(frames: int, seconds: float) -> float:
    return round(frames / seconds, 1) if seconds > 0 else 0.0


def run_message(run: Run) -> str:
    if run.failure or run.note:
        return run.failure or run.note or ""
    if run.failed:
        failures = "; ".join(f"{result.source}: {result.error}" for result in run.failed)
        if len(run.results) == 1:
            return failures
        return f"{len(run.failed)} of {len(run.results)} videos failed: {failures}"
    if run.stopped:
        return f"stopped by SIGTERM after {len(run.results)} videos ({run.frames} frames)"
    what = run.results[0].source if len(run.results) == 1 else f"{len(run.results)} videos"
    rate = frames_per_second(run.frames, run.seconds)
    return f"extracted {run.frames} frames from {what} in {duration(run.seconds)} ({rate:.0f} frames/s)"


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2f} s"


def output_paths(run: Run) -> list[str]:
    """A few of the files written: each video's manifest first, then its first images."""
    manifests = [f"{result.folder}/{MANIFEST}" for result in run.results if result.manifest_bytes]
    images = [
        f"{result.folder}/{frame.file}" for result in run.results for frame in result.frames[:SUMMARY_PATHS]
    ]
    return (manifests + images)[:SUMMARY_PATHS]


def summary(run: Run) -> dict[str, Any]:
    return {
        "message": run_message(run),
        "outputs": {
            "count": sum(result.files for result in run.results),
            "bytes": sum(result.bytes for result in run.results),
            "paths": output_paths(run),
        },
        "frames": run.frames,
        "seconds": round(run.seconds, 3),
        "framesPerSecond": frames_per_second(run.frames, run.seconds),
    }


def fit_termination_log(document: dict[str, Any], limit: int = TERMINATION_LOG_LIMIT) -> bytes:
    """The summary as JSON within `limit` bytes: drops paths, then shortens the message, if need be."""
    document = json.loads(json.dumps(document))
    data = json.dumps(document, ensure_ascii=False).encode()
    while len(data) > limit and document["outputs"]["paths"]:
        document["outputs"]["paths"].pop()
        data = json.dumps(document, ensure_ascii=False).encode()
    if len(data) > limit:
        excess = len(data) - limit
        message = document["message"].encode()
        document["message"] = message[: max(0, len(message) - excess - 8)].decode(errors="ignore") + " …"
        data = json.dumps(document, ensure_ascii=False).encode()
    return data


def write_termination_log(path: Path, document: dict[str, Any]) -> None:
    try:
        path.write_bytes(fit_termination_log(document))
    except OSError as error:
        log.warning("cannot write the summary to %s (%s); carrying on", path, describe(error))


# -------------------------------------------------------------------------------------------- main


def run_all(settings: Settings) -> Run:
    started = time.monotonic()
    results: list[VideoResult] = []
    try:
        videos = find_videos(settings)
    except VideoError as error:
        return Run(results, time.monotonic() - started, failure=str(error))
    if not videos:
        return Run(results, time.monotonic() - started, note=f"no .mp4 files under {settings.input_folder}")
    with ThreadPoolExecutor(settings.workers, thread_name_prefix="encode") as pool:
        for path, relative in videos:
            if STOP_REQUESTED.is_set():
                break
            log.info("%s: extracting (%s mode)", relative, settings.selection.mode)
            results.append(extract_video(path, relative, settings, pool))
            log_result(results[-1])
    return Run(results, time.monotonic() - started, stopped=STOP_REQUESTED.is_set())


def log_result(result: VideoResult) -> None:
    rate = frames_per_second(len(result.frames), result.seconds)
    if result.error:
        log.error("%s: %s", result.source, result.error)
    else:
        log.info(
            "%s: %d images in %s (%.0f frames/s)",
            result.source,
            len(result.frames),
            duration(result.seconds),
            rate,
        )


def request_stop(signum: int, frame: Any) -> None:
    STOP_REQUESTED.set()


def configure() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    cv2.setNumThreads(1)  # the encoding pool is the parallelism; OpenCV's own threads would only spin


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    configure()
    environ = dict(os.environ if environ is None else environ)
    try:
        settings = read_settings(argv, environ)
    except UsageError as error:
        argument_parser().print_usage(sys.stderr)
        log.error("invalid settings: %s", error)
        run = Run([], 0.0, failure=f"invalid settings: {error}")
        write_termination_log(termination_log_path(argv, environ), summary(run))
        return EXIT_USAGE
    STOP_REQUESTED.clear()
    signal.signal(signal.SIGTERM, request_stop)
    try:
        run = run_all(settings)
    except Exception as error:  # still tell the operator what happened
        log.exception("unexpected error")
        run = Run([], 0.0, failure=f"unexpected error: {describe(error)}")
    document = summary(run)
    write_termination_log(settings.termination_log, document)
    log.log(logging.ERROR if run.exit_status else logging.INFO, "%s", document["message"])
    return run.exit_status


if __name__ == "__main__":
    sys.exit(main())
