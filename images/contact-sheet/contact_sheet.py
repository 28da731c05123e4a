"""Make a contact sheet of a video's extracted frames: the contact-sheet Action's entry point.

The work is done by the `contactsheet` package beside this file; `python contact_sheet.py --help` lists
the settings and the exit codes.
"""

import os
import sys

# numpy's OpenBLAS (unused here) starts a thread per CPU when numpy is imported. Set before the first
# import of numpy; the image sets it too.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from contactsheet.main import main  # noqa: E402  (after the setting above)

if __name__ == "__main__":
    sys.exit(main())
