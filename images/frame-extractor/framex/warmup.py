"""The encoding side's modules, imported on an encoding thread while the first video decodes.

numpy, libjpeg-turbo's simplejpeg and the colour code take 60-70 ms of one CPU to import, after PyAV
(which decoding needs first). Imported before decoding began, they held every run's first frame back
by that long while the second CPU waited (1080p BT.709: the first frame decoded 210 ms after the
start, now 140-150 ms). The decoding thread does not wait for them: it decodes into the
frames in flight, which the encoding threads take once the import is done. Started once the video is
open: started earlier, the import held the GIL through the opening's many short system calls and
made it 60 ms slower.
"""

from __future__ import annotations

import importlib
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from framex.choice import Candidate
from framex.records import FrameRecord
from framex.settings import ImageOptions

ENCODING_MODULE = "framex.images"
# While the imports run (CPU-bound, holding the GIL), the decoding thread needs the GIL between its
# packets; with the default 5 ms switch interval it waited up to 5 ms for it at every packet.
IMPORT_SWITCH_INTERVAL_SECONDS = 0.0005

started = False


def start(pool: ThreadPoolExecutor) -> Future[object] | None:
    """Imports the encoding module on one of the pool's threads, once; the GIL changes hands more
    often until that is done."""
    global started
    if started:
        return None
    started = True
    usual = sys.getswitchinterval()
    sys.setswitchinterval(IMPORT_SWITCH_INTERVAL_SECONDS)

    def load() -> object:
        try:
            return importlib.import_module(ENCODING_MODULE)
        finally:
            sys.setswitchinterval(usual)

    return pool.submit(load)


def write_image(candidate: Candidate, folder: Path, options: ImageOptions) -> FrameRecord:
    """Runs on an encoding thread: `framex.images.write_image`, imported there (`start`), not on the
    decoding thread."""
    from framex import images

    return images.write_image(candidate, folder, options)
