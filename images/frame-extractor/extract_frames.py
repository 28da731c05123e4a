"""Extract the frames of MP4 videos into JPEG or PNG images: the frame-extractor Action's entry point.

The work is done by the `framex` package beside this file; `python extract_frames.py --help` lists the
settings and the exit codes.
"""

import logging
import os
import sys

# numpy's OpenBLAS (unused here) starts a thread per CPU when numpy is imported: 60 ms of CPU per run
# measured on 2 CPUs, more on a big node. Set before the first import of numpy; the image sets it too.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from framex.main import main  # noqa: E402  (after the setting above)

if __name__ == "__main__":
    status = main()
    # Every image, manifest and the summary are written and closed, and the encoding threads have
    # ended: the interpreter's own teardown (freeing numpy's, OpenCV's and FFmpeg's modules) would
    # only add 25-30 ms of wall time and CPU to every run.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
