"""The run's summary: message, outputs, exit status, and the termination log."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("contact_sheet")

TERMINATION_LOG_LIMIT = 4096
SUMMARY_PATHS = 5
# The exit-code contract, as the frame extractor's: 3 tells a retry policy that running again on the
# same input cannot help.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BAD_INPUT = 0, 1, 2, 3


@dataclass
class SheetResult:
    source: str  # the manifest, relative to the input folder
    path: str | None = None  # the sheet, relative to the output folder
    bytes: int = 0
    frames: int = 0
    width: int = 0
    height: int = 0
    error: str | None = None
    bad_input: bool = False  # the error is the input's own: trying again cannot help


@dataclass
class Run:
    results: list[SheetResult] = field(default_factory=list)
    seconds: float = 0.0
    failure: str | None = None  # what stopped the run before any manifest
    note: str | None = None  # why there was nothing to do

    @property
    def written(self) -> list[SheetResult]:
        return [result for result in self.results if result.path]

    @property
    def failed(self) -> list[SheetResult]:
        return [result for result in self.results if result.error]

    @property
    def exit_status(self) -> int:
        if self.failure or any(not result.bad_input for result in self.failed):
            return EXIT_FAILED
        return EXIT_BAD_INPUT if self.failed else EXIT_OK


def run_message(run: Run) -> str:
    if run.failure or run.note:
        return run.failure or run.note or ""
    if run.failed:
        failures = "; ".join(result.error or "" for result in run.failed)
        if len(run.results) == 1:
            return failures
        return f"{len(run.failed)} of {len(run.results)} contact sheets failed: {failures}"
    if len(run.results) == 1:
        result = run.results[0]
        return f"contact sheet of {result.frames} frames ({result.width}x{result.height}) at {result.path}"
    frames = sum(result.frames for result in run.results)
    return f"{len(run.results)} contact sheets of {frames} frames in {run.seconds:.1f} s"


def summary(run: Run) -> dict[str, Any]:
    return {
        "message": run_message(run),
        "outputs": {
            "count": len(run.written),
            "bytes": sum(result.bytes for result in run.written),
            "paths": [result.path for result in run.written][:SUMMARY_PATHS],
        },
        "sheets": len(run.written),
        "frames": sum(result.frames for result in run.written),
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
        log.warning("cannot write the summary to %s (%s); carrying on", path, error.strerror or error)
