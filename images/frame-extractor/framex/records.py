"""What the manifest lists of each image written."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameRecord:
    """One image: the frame's number and its time in seconds from the start of the video, the image's
    size in pixels, its file name and size in bytes."""

    index: int
    seconds: float
    width: int
    height: int
    file: str
    bytes: int
