"""One video from file to folder: its manifest, its images, its result."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from framex.decoding import Extraction, VideoError, configure_decoder, describe, open_video, video_stream
from framex.records import FrameRecord
from framex.settings import Settings
from framex.stopping import Terminated

log = logging.getLogger("extract_frames")

FRAME_FILE = re.compile(r"frame_\d{6,}\.(jpg|png)")
MANIFEST = "manifest.json"
PARTIAL_MANIFEST = ".manifest.json.partial"


@dataclass
class VideoResult:
    source: str
    folder: str
    frames: list[FrameRecord] = field(default_factory=list)
    manifest_bytes: int = 0
    error: str | None = None
    bad_input: bool = False  # the error is the file's own: trying again cannot help
    seconds: float = 0.0
    decoded: int = 0
    video: dict[str, Any] = field(default_factory=dict)  # codec, size, fps, duration

    @property
    def files(self) -> int:
        return len(self.frames) + (1 if self.manifest_bytes else 0)

    @property
    def bytes(self) -> int:
        return sum(frame.bytes for frame in self.frames) + self.manifest_bytes


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
        "stream": stream.index,
        "codec": stream.codec_context.name,
        "width": stream.codec_context.width,
        "height": stream.codec_context.height,
        "fps": round(float(rate), 6) if rate else None,
        "durationSeconds": round(float(duration), 6) if duration is not None else None,
    }


def log_stream_choice(
    name: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> None:
    others = [other for other in container.streams.video if other.index != stream.index]
    if others:
        described = ", ".join(
            f"{other.index} ({other.codec_context.width}x{other.codec_context.height})" for other in others
        )
        log.info(
            "%s: video stream %d (%dx%d) chosen; also in the file: %s (EXTRACT_STREAM chooses another)",
            name,
            stream.index,
            stream.codec_context.width,
            stream.codec_context.height,
            described,
        )


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
            stream = video_stream(container, settings.stream)
            log_stream_choice(relative, container, stream)
            result.video = describe_video(stream)
            threads = configure_decoder(stream, settings)
            prepare_folder(folder)
            prepared = True
            result.manifest_bytes = write_manifest(folder, manifest_document(result, settings, False))
            extraction = Extraction(container, stream, folder, settings, pool, relative, threads)
            try:
                extraction.run()
            finally:
                result.frames, result.decoded = extraction.records, extraction.frames_decoded
            result.error, result.bad_input = extraction.failure(), extraction.bad_input
    except VideoError as error:
        result.error, result.bad_input = str(error), error.bad_input
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


def find_videos(settings: Settings) -> list[tuple[Path, str]]:
    """(path, path relative to the input folder) of each video to process: the named file, or every
    `.mp4` under the input folder whatever the case of its extension (action cameras write `.MP4`),
    in sorted order. AppleDouble sidecars (`._name.mp4`, the metadata macOS writes beside each file on
    a drive that is not its own format) are skipped, and the log says so."""
    if settings.file is not None:
        return [(settings.input_folder / settings.file, settings.file)]
    if not settings.input_folder.is_dir():
        raise VideoError(f"input folder {settings.input_folder} is not a folder", bad_input=False)
    found = [
        path for path in settings.input_folder.rglob("*") if path.suffix.lower() == ".mp4" and path.is_file()
    ]
    sidecars = sorted(
        path.relative_to(settings.input_folder).as_posix() for path in found if is_sidecar(path)
    )
    if sidecars:
        log.info(
            "skipping %d AppleDouble sidecar file(s) (._*, macOS metadata): %s",
            len(sidecars),
            ", ".join(sidecars[:5]),
        )
    relative = sorted(
        path.relative_to(settings.input_folder).as_posix() for path in found if not is_sidecar(path)
    )
    return [(settings.input_folder / name, name) for name in relative]


def is_sidecar(path: Path) -> bool:
    """An AppleDouble file: `._` and the name of the file whose metadata it holds."""
    return path.name.startswith("._")
