"""OpenCV, imported the first time an image needs it: the range stretch of limited-range BT.601 video,
a resize, a rotation, a PNG or the BGR route. JPEG images of BT.709 and other converted matrices at
their own size need none of it, and the import costs about 20 ms of CPU."""

from __future__ import annotations

import functools
from types import ModuleType


@functools.cache
def opencv() -> ModuleType:
    import cv2

    cv2.setNumThreads(1)  # the encoding pool is the parallelism; OpenCV's own threads would only spin
    return cv2
