"""Colour: the decoder's planes as JPEG (BT.601 full-range YCbCr) or RGB planes."""

from __future__ import annotations

import av
import numpy as np

# Video luma spans 16-235 and chroma 16-240, JPEG uses 0-255 for both: without this stretch the
# images come out washed out and measurably worse.
LUMA_TO_FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
CHROMA_TO_FULL_RANGE = np.clip(np.round((np.arange(256) - 128) * 255 / 224 + 128), 0, 255).astype(np.uint8)
# Formats whose planes go to the JPEG encoder as they are; others are converted to 8-bit 4:2:0 first.
PLANAR_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray"}
FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p"}
AV_COLOR_RANGE_JPEG = 2


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


def plane_view(frame: av.VideoFrame, number: int, width: int, height: int) -> np.ndarray:
    """A plane of the decoded frame as an array, without copying (rows may carry padding)."""
    plane = frame.planes[number]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[:height, :width]
