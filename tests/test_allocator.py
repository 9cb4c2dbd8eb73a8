import sys
from pathlib import Path

import pytest
import torch

from pretext.allocator import keep_freed_memory, phase, release_freed_memory

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def touch_and_free(mib: int) -> None:
    block = torch.ones(mib * 1024 * 1024 // 4)  # written, so its pages are resident
    del block


@linux
def test_freed_memory_is_kept_until_a_phase_ends():
    assert keep_freed_memory()
    release_freed_memory()
    before = resident_mib()
    touch_and_free(256)
    kept = resident_mib()
    assert kept - before > 200  # freed, but still in the heap for the next step

    @phase
    def work():
        touch_and_free(256)
        return "done"

    assert work() == "done"
    assert resident_mib() - before < 50  # handed back when the phase returned
