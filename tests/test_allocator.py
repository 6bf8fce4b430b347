"""Large buffers a run frees go back to the operating system (minigpt.allocator)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import os, sys
import torch
from minigpt.allocator import return_large_buffers
if sys.argv[1] == "fixed":
    assert return_large_buffers()

def resident_mib():
    return int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

# A large buffer freed (glibc then raises its threshold to its size, up to 32 MiB), then a smaller one.
big = torch.ones(24 * 2**20 // 4)
del big
before = resident_mib()
smaller = torch.ones(16 * 2**20 // 4)
del smaller
print(resident_mib() - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator is Linux's")
def test_a_freed_large_buffer_leaves_the_process() -> None:
    def kept_mib(mode: str) -> float:
        result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return float(result.stdout.strip())

    assert kept_mib("fixed") < 4  # unmapped when freed
    assert kept_mib("default") > 8  # what glibc's own threshold keeps on the heap
