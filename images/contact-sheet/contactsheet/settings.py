"""Settings: environment variables, checked before any work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")


class UsageError(Exception):
    """Invalid settings: exit status 2."""


@dataclass(frozen=True)
class Settings:
    input_folder: Path
    output_folder: Path
    file: str | None  # the manifest, relative to input_folder; None: every manifest.json under it
    termination_log: Path
    frames: int = 16
    columns: int = 4
    tile_width: int = 320
    quality: int = 90


def termination_log_path(environ: Mapping[str, str]) -> Path:
    """Where the summary goes, found even when the other settings are invalid. The operator sets
    AUTOSCENE_TERMINATION_LOG in every Job."""
    named = environ.get("AUTOSCENE_TERMINATION_LOG") or environ.get("TERMINATION_LOG")
    return Path(named) if named else DEFAULT_TERMINATION_LOG


def bounded_int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name) or None  # an empty variable counts as unset
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise UsageError(f"{name}={raw!r}: must be a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise UsageError(f"{name}={raw!r}: must be a whole number from {low} to {high}")
    return value


def relative_file(raw: str | None) -> str | None:
    if not raw:
        return None
    path = PurePosixPath(raw)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise UsageError(f"AUTOSCENE_FILE={raw!r}: must be a path inside INPUT_FOLDER, relative to it")
    return raw


def read_settings(environ: Mapping[str, str]) -> Settings:
    return Settings(
        input_folder=Path(environ.get("INPUT_FOLDER") or "/cos/files"),
        output_folder=Path(environ.get("OUTPUT_FOLDER") or "/cos/outputs"),
        file=relative_file(environ.get("AUTOSCENE_FILE")),
        termination_log=termination_log_path(environ),
        frames=bounded_int(environ, "SHEET_FRAMES", 16, 1, 1000),
        columns=bounded_int(environ, "SHEET_COLUMNS", 4, 1, 64),
        tile_width=bounded_int(environ, "SHEET_TILE_WIDTH", 320, 96, 3840),
        quality=bounded_int(environ, "SHEET_QUALITY", 90, 1, 100),
    )
