"""Keep freed memory in the process heap instead of returning it to the OS.

glibc serves large allocations (a batch of views, an activation map) with fresh mmap pages and
unmaps them when freed, so every training step pays page faults for memory it had a step ago;
on CPU that was a third of a small model's step time (benchmarks/throughput.py). Raising the
mmap and trim thresholds makes the heap reuse those blocks. Linux/glibc only; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Ask glibc to keep blocks up to `threshold` bytes in the heap; True when applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, threshold)
    )
    return _done
