"""Extract the frames of MP4 videos into JPEG or PNG images: the frame-extractor Action's entry point.

The work is done by the `framex` package beside this file; `python extract_frames.py --help` lists the
settings and the exit codes.
"""

import sys

from framex.main import main

if __name__ == "__main__":
    sys.exit(main())
