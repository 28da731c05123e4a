"""The run's summary: message, outputs, exit status, and the termination log."""

from __future__ import annotations

import json
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framex.decoding import describe
from framex.videos import MANIFEST, VideoResult

log = logging.getLogger("extract_frames")

TERMINATION_LOG_LIMIT = 4096
SUMMARY_PATHS = 5
# The exit-code contract, documented in --help and the README: 3 tells a retry policy that running
# again on the same input cannot help.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BAD_INPUT = 0, 1, 2, 3
EXIT_TERMINATED = 128 + signal.SIGTERM


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
        if self.failure or any(not result.bad_input for result in self.failed):
            return EXIT_FAILED
        return EXIT_BAD_INPUT if self.failed else EXIT_OK


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
