"""glibc's malloc, told to keep and reuse the memory that every image takes and gives back.

Each image needs buffers of 0.2-12 MB for a few milliseconds (range-stretched planes, converted
frames, the JPEG itself). glibc maps allocations above its mmap threshold (128 KiB at first) straight
from the kernel, and hands free memory at the top of a heap back to it above its trim threshold
(twice the former); both rise only once a large mapped block has been freed. Until something does
that early, every image's buffers are mapped and their pages faulted in and zeroed again: 720p noisy
video took 180,000 page faults and 0.2 s more CPU (2.5 %) than when OpenCV's import, on the main
thread at start, happened to raise the thresholds. Set once here, they no longer depend on which
module loads first. Source: mallopt(3), glibc's malloc/malloc.c (DEFAULT_MMAP_THRESHOLD_MAX).
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit systems: blocks below it come from the heaps and are reused.
MMAP_THRESHOLD_BYTES = 32 * 2**20
# Free memory a heap may keep at its top: as glibc sets it itself (twice the mmap threshold).
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES


def reuse_freed_memory() -> bool:
    """Sets the thresholds; False where the C library has no mallopt (musl) or refuses them."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
