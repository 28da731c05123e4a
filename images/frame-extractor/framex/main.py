"""The entry point: settings, every video, the summary."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from framex.allocation import reuse_freed_memory
from framex.decoding import VideoError, describe
from framex.settings import Settings, UsageError, argument_parser, read_settings, termination_log_path
from framex.stopping import STOP_REQUESTED
from framex.summary import EXIT_USAGE, Run, duration, frames_per_second, summary, write_termination_log
from framex.videos import VideoResult, extract_video, find_videos

log = logging.getLogger("extract_frames")


def run_all(settings: Settings) -> Run:
    started = time.monotonic()
    results: list[VideoResult] = []
    try:
        videos = find_videos(settings)
    except VideoError as error:
        return Run(results, time.monotonic() - started, failure=str(error))
    if not videos:
        return Run(results, time.monotonic() - started, note=f"no .mp4 files under {settings.input_folder}")
    with ThreadPoolExecutor(
        settings.workers, thread_name_prefix="encode", initializer=yield_to_decoding
    ) as pool:
        for path, relative in videos:
            if STOP_REQUESTED.is_set():
                break
            log.info("%s: extracting (%s mode)", relative, settings.selection.mode)
            results.append(extract_video(path, relative, settings, pool))
            log_result(results[-1])
    return Run(results, time.monotonic() - started, stopped=STOP_REQUESTED.is_set())


# Niceness of the encoding threads. Decoding feeds them: when there are more busy threads than CPUs, the
# decoding thread (or FFmpeg's frame threads, which it starts) goes first and never starves the
# encoders, which take every CPU moment it leaves. A Pod's threads compete by niceness only with each
# other: the container's CPU share is unchanged.
ENCODING_NICENESS = 5


def yield_to_decoding() -> None:
    """Runs first on each encoding thread: lowers its own priority (Linux sets niceness per thread;
    measured 4-12 % less wall time at 720p and 1080p on 2 busy CPUs)."""
    thread = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + ENCODING_NICENESS))
    except OSError:  # not supported: the same work, in another order
        pass


def log_result(result: VideoResult) -> None:
    log.log(logging.ERROR if result.error else logging.INFO, "%s", result_line(result))


def result_line(result: VideoResult) -> str:
    """What the run's log says of one video: its error, or how many images it gave and how fast."""
    if result.error:
        return f"{result.source}: {result.error}"
    rate = frames_per_second(len(result.frames), result.seconds)
    return f"{result.source}: {len(result.frames)} images in {duration(result.seconds)} ({rate:.0f} frames/s)"


def request_stop(signum: int, frame: Any) -> None:
    STOP_REQUESTED.set()


def configure() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    reuse_freed_memory()


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
    if document["message"] not in {result_line(result) for result in run.results}:  # said once is enough
        log.log(logging.ERROR if run.exit_status else logging.INFO, "%s", document["message"])
    return run.exit_status


if __name__ == "__main__":
    sys.exit(main())
