"""Large CPU buffers go back to the operating system when a run of a large model frees them.

glibc serves an allocation above its mmap threshold with mmap and unmaps it when freed, but it
raises the threshold each time such a block is freed (up to 32 MiB). From then on a training
step's activations come from the heap, which fragments and keeps memory the step no longer uses:
a fine-tune of a 124M-parameter model peaked 16% higher with LoRA, 9% with full fine-tuning. A
fixed threshold keeps every large buffer mmap'd, at the price of mapping it afresh each step:
4.5% of a 0.8M-parameter pretrain-small run's wall time (its steps are short and its memory
small), so only models of LARGE_MODEL_PARAMETERS or more get it (benchmarks/README.md, "LoRA
against full fine-tuning").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
THRESHOLD_BYTES = 1 << 20
# Where the memory a fragmented heap keeps starts to matter more than the page faults of mapping
# each large buffer afresh: fine-tunes of the 124M-135M models people start from, not the
# few-million-parameter models trained from scratch on a CPU.
LARGE_MODEL_PARAMETERS = 50_000_000
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
