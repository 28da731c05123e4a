"""The sheet itself: tiles of frames scaled down (or up) to one width, each labelled with its time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from contactsheet.manifest import BadInput, Frame, Manifest, frame_path

# Empty cells of the last row, and the bands around a frame whose shape differs from the tile's.
BACKGROUND = (32, 32, 32)
LABEL_BOX = (0, 0, 0)
LABEL_TEXT = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
# JPEG cannot hold a side above 65,535 pixels; the pixel cap keeps the sheet's memory under ~300 MB.
MAX_SIDE = 65_000
MAX_PIXELS = 100_000_000
# libjpeg decodes straight to 1/2, 1/4 or 1/8 of the size: a 4K frame for a 320-pixel tile never
# exists in memory at full size.
REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


@dataclass(frozen=True)
class Layout:
    columns: int
    rows: int
    tile_width: int
    tile_height: int

    @property
    def width(self) -> int:
        return self.columns * self.tile_width

    @property
    def height(self) -> int:
        return self.rows * self.tile_height

    def origin(self, position: int) -> tuple[int, int]:
        """(x, y) of the tile at `position`, left to right, top to bottom."""
        row, column = divmod(position, self.columns)
        return column * self.tile_width, row * self.tile_height


def timestamp(seconds: float) -> str:
    """HH:MM:SS.mmm, to the nearest millisecond."""
    millis = round(abs(seconds) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, millis = divmod(millis, 1000)
    sign = "-" if seconds < 0 and (hours or minutes or whole or millis) else ""
    return f"{sign}{hours:02d}:{minutes:02d}:{whole:02d}.{millis:03d}"


def plan_layout(count: int, columns: int, tile_width: int, width: int, height: int) -> Layout:
    """The grid for `count` tiles; the first frame's shape (width x height) sets the tiles' height."""
    tile_height = max(1, round(tile_width * height / width))
    columns = min(columns, count)
    layout = Layout(columns, math.ceil(count / columns), tile_width, tile_height)
    if max(layout.width, layout.height) > MAX_SIDE or layout.width * layout.height > MAX_PIXELS:
        raise BadInput(
            f"a sheet of {layout.width}x{layout.height} pixels would be too large for JPEG "
            f"(at most {MAX_SIDE} a side, {MAX_PIXELS // 1_000_000} megapixels): "
            "lower SHEET_FRAMES or SHEET_TILE_WIDTH, or change SHEET_COLUMNS"
        )
    return layout


def read_frame(manifest: Manifest, frame: Frame, tile_width: int) -> np.ndarray:
    """One frame as BGR, decoded at a reduced size when it is at least twice as wide as a tile."""
    path = frame_path(manifest, frame)
    flags = cv2.IMREAD_COLOR
    if frame.width:
        flags = next((flag for factor, flag in REDUCED if frame.width // factor >= tile_width), flags)
    picture = cv2.imdecode(np.fromfile(path, np.uint8), flags)
    if picture is None:
        raise BadInput(f"{manifest.relative}: {frame.file} is not an image")
    return picture


def fit(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """The picture scaled to fit width x height keeping its aspect ratio, centred on the background."""
    source_height, source_width = picture.shape[:2]
    scale = min(width / source_width, height / source_height)
    size = (max(1, round(source_width * scale)), max(1, round(source_height * scale)))
    shrinking = size[0] < source_width
    scaled = cv2.resize(picture, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if size == (width, height):
        return scaled
    tile = np.empty((height, width, 3), np.uint8)
    tile[:] = BACKGROUND
    left, top = (width - size[0]) // 2, (height - size[1]) // 2
    tile[top : top + size[1], left : left + size[0]] = scaled
    return tile


def draw_label(tile: np.ndarray, text: str) -> None:
    """White text on a black box in the lower left corner, sized to the tile (about half its width)."""
    height, width = tile.shape[:2]
    scale = min(1.5, max(0.4, width / 640))
    thickness = 1 if scale < 0.8 else 2
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(3, round(text_height * 0.35))
    box_width, box_height = text_width + 2 * pad, text_height + baseline + 2 * pad
    top = max(0, height - box_height)
    cv2.rectangle(tile, (0, top), (min(width, box_width) - 1, height - 1), LABEL_BOX, cv2.FILLED)
    cv2.putText(tile, text, (pad, height - pad - baseline), FONT, scale, LABEL_TEXT, thickness, cv2.LINE_AA)


def render(manifest: Manifest, frames: Sequence[Frame], columns: int, tile_width: int) -> np.ndarray:
    """The sheet, reading one frame at a time."""
    sheet: np.ndarray | None = None
    layout: Layout | None = None
    for position, frame in enumerate(frames):
        picture = read_frame(manifest, frame, tile_width)
        if sheet is None or layout is None:
            # The manifest's size, when it gives one: a picture decoded at a reduced size is rounded.
            height, width = picture.shape[:2]
            if frame.width and frame.height:
                width, height = frame.width, frame.height
            layout = plan_layout(len(frames), columns, tile_width, width, height)
            sheet = np.empty((layout.height, layout.width, 3), np.uint8)
            sheet[:] = BACKGROUND
        tile = fit(picture, layout.tile_width, layout.tile_height)
        del picture
        draw_label(tile, timestamp(frame.seconds))
        x, y = layout.origin(position)
        sheet[y : y + layout.tile_height, x : x + layout.tile_width] = tile
    if sheet is None:
        raise BadInput(f"{manifest.relative}: lists no frames")
    return sheet


def encode(sheet: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("the JPEG encoder refused the sheet")
    return bytes(data.tobytes())


def write_atomically(path: Path, data: bytes) -> None:
    """The file whole or not at all: written beside its place, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
