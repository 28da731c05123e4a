"""The entry point: settings, every manifest, the summary."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence

import cv2

import contactsheet
from contactsheet.manifest import BadInput, check_files, evenly_spaced, find_manifests, read_manifest
from contactsheet.render import encode, render, write_atomically
from contactsheet.settings import Settings, UsageError, read_settings, termination_log_path
from contactsheet.summary import EXIT_USAGE, Run, SheetResult, summary, write_termination_log

log = logging.getLogger("contact_sheet")

SHEET = "contact_sheet.jpg"


def make_sheet(settings: Settings, relative: str) -> SheetResult:
    """One manifest's sheet; every check that can fail on the input comes before anything is written."""
    result = SheetResult(source=relative)
    try:
        manifest = read_manifest(settings.input_folder, relative)
        result.source = manifest.relative
        if not manifest.complete:
            log.warning("%s: the manifest says the video was not read completely", manifest.relative)
        chosen = [
            manifest.frames[position]
            for position in evenly_spaced([frame.seconds for frame in manifest.frames], settings.frames)
        ]
        check_files(manifest, chosen)
        sheet = render(manifest, chosen, settings.columns, settings.tile_width)
        data = encode(sheet, settings.quality)
        relative_sheet = f"{manifest.relative_folder}/{SHEET}" if manifest.relative_folder else SHEET
        write_atomically(settings.output_folder / relative_sheet, data)
        result.path, result.bytes, result.frames = relative_sheet, len(data), len(chosen)
        result.width, result.height = sheet.shape[1], sheet.shape[0]
    except BadInput as error:
        result.error, result.bad_input = str(error), True
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        result.error = f"{result.source}: cannot read or write: {error.strerror or error}{where}"
    except Exception as error:  # one broken manifest must not cost the others their sheets
        log.exception("%s: unexpected error", result.source)
        result.error = f"{result.source}: unexpected error: {type(error).__name__}: {error}"
    return result


def run_all(settings: Settings) -> Run:
    started = time.monotonic()
    if settings.file is not None:
        manifests = [settings.file]
    else:
        try:
            manifests = find_manifests(settings.input_folder)
        except OSError as error:
            return Run([], time.monotonic() - started, failure=str(error))
        if not manifests:
            return Run([], time.monotonic() - started, note=f"no manifest.json under {settings.input_folder}")
    results = []
    for relative in manifests:
        result = make_sheet(settings, relative)
        results.append(result)
        if result.error:
            log.error("%s", result.error)
        else:
            log.info("%s: %d frames, %dx%d pixels", result.path, result.frames, result.width, result.height)
    return Run(results, time.monotonic() - started)


def print_help() -> None:
    print((contactsheet.__doc__ or "").strip())


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(argument in ("-h", "--help") for argument in argv):
        print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    cv2.setNumThreads(1)  # small images, one at a time: OpenCV's own threads would only spin
    environ = dict(os.environ if environ is None else environ)
    try:
        settings = read_settings(environ)
    except UsageError as error:
        log.error("invalid settings: %s", error)
        run = Run([], 0.0, failure=f"invalid settings: {error}")
        write_termination_log(termination_log_path(environ), summary(run))
        return EXIT_USAGE
    try:
        run = run_all(settings)
    except Exception as error:  # still tell the operator what happened
        log.exception("unexpected error")
        run = Run([], 0.0, failure=f"unexpected error: {type(error).__name__}: {error}")
    document = summary(run)
    write_termination_log(settings.termination_log, document)
    if len(run.results) != 1:  # one sheet's outcome is already the last line
        log.log(logging.ERROR if run.exit_status else logging.INFO, "%s", document["message"])
    return run.exit_status
