"""Large CPU buffers go back to the operating system when a run frees them.

glibc serves an allocation above its mmap threshold with mmap and unmaps it when freed, but it
raises the threshold each time such a block is freed (up to 32 MiB). From then on a training
step's activations come from the heap, which fragments and keeps memory the step no longer uses:
a fine-tune of a 124M-parameter model peaked 16% higher with LoRA, 9% with full fine-tuning
(benchmarks/README.md, "LoRA on 2 CPU cores"). A fixed threshold keeps every large buffer mmap'd;
tensors under it (all of a small model's) are served as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
THRESHOLD_BYTES = 1 << 20
# What a user sets in the environment wins, as glibc itself reads it.
ENVIRONMENT = "MALLOC_MMAP_THRESHOLD_"


def return_large_buffers(threshold: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes for this process; whether it was set (not
    on other C libraries or systems, nor when the environment sets it)."""
    if not sys.platform.startswith("linux") or ENVIRONMENT in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold) == 1
