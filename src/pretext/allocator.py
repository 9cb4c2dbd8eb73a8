"""Keep freed memory in the process heap instead of returning it to the OS.

glibc serves large allocations (a batch of views, an activation map) with fresh mmap pages and
unmaps them when freed, so every training step pays page faults for memory it had a step ago.
Raising the mmap and trim thresholds (to 1 GiB: lower ones sent a large step's im2col buffers
back to mmap) makes the heap reuse those blocks. One arena for all threads: with one per thread
(PyTorch's worker threads allocate too) each arena kept its own free blocks and the peak memory
varied widely from run to run. Linux/glibc only; elsewhere a no-op.

The price: what one phase frees (training steps) stays resident through the next, whose blocks
have other sizes. `release_freed_memory` (malloc_trim) hands every free page back; `@phase`
does it when a phase's function returns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
_done = False


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Ask glibc to keep blocks up to `threshold` bytes in the heap; True when applied."""
    global _done
    if _done:
        return True
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    _done = all(
        mallopt(option, value)
        for option, value in (
            (M_ARENA_MAX, 1),
            (M_MMAP_THRESHOLD, threshold),
            (M_TRIM_THRESHOLD, threshold),
        )
    )
    return _done


def release_freed_memory() -> bool:
    """Return the heap's free pages to the OS (glibc's malloc_trim); True when it could.
    Costs the next phase a page fault per page it touches again: call it between phases,
    never inside a training loop."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def phase(function):
    """Decorator: release the heap's free pages once `function` returns (or raises)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            release_freed_memory()

    return wrapper
