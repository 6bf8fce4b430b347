"""CPU threads for minigpt processes that share the cores.

Torch gives every process one thread per core, and its OpenMP threads spin while they wait for
work: two such processes on the same cores spend most of their time spinning against each other
(two pretrain-small runs on 2 cores each took 7x as long as one alone). So every minigpt process
that computes on the CPU holds an entry in minigpt.cpu_registry for as long as it runs, and uses
its share of torch's threads: all of them when it is alone, threads // processes otherwise.

What the user set wins: OMP_NUM_THREADS in the environment when minigpt started, or an explicit
thread count (the `cpu.threads` option of `minigpt fit`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from minigpt.cpu_registry import CoreShare

# Decided once, when minigpt is imported: Lightning's DDP launcher sets OMP_NUM_THREADS itself later.
USER_SET_THREADS = "OMP_NUM_THREADS" in os.environ
# Torch's own choice (one thread per physical core), before anything here changes it.
DEFAULT_THREADS = torch.get_num_threads()


class ThreadPolicy:
    """Chooses and applies this process's torch thread count when it starts, from the minigpt
    processes computing beside it; with `adaptive`, `update()` follows them as they come and go.
    Each method returns a line worth logging when the count is set or changes.

    Fixed by default, because a matrix product or a sum split over another number of threads adds
    its terms in another order: a run whose thread count changed midway no longer computes what
    an undisturbed run computes, and a resumed run no longer what an uninterrupted one did."""

    def __init__(self, threads: int | None = None, share: CoreShare | None = None, adaptive: bool = False) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be 1 or more, got {threads}")
        self.threads = threads
        self.share = share or CoreShare()
        self.automatic = threads is None and not USER_SET_THREADS
        self.adaptive = adaptive
        self._before = torch.get_num_threads()

    def start(self) -> str:
        self._before = torch.get_num_threads()
        if not self.automatic:
            self.share.leave()  # an entry joined early (PROCESS_ENTRY) would count a run that does not share
        if self.threads is not None:
            torch.set_num_threads(self.threads)
            return f"CPU threads: {self.threads} (cpu.threads)"
        if not self.automatic:
            return f"CPU threads: {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
        self.share.join()
        return self._share(always=True) or ""

    def update(self) -> str | None:
        """Follow the processes that share the CPU now (adaptive policies only)."""
        if not (self.automatic and self.adaptive):
            return None
        return self._share()

    def restore(self, threads: int) -> str | None:
        """Compute with `threads` again (a resumed run: the count the interrupted run had)."""
        if not self.automatic or threads == torch.get_num_threads():
            return None
        torch.set_num_threads(threads)
        return f"CPU threads: {threads} (as the run that wrote the checkpoint, so that it computes alike)"

    def _share(self, always: bool = False) -> str | None:
        processes = self.share.processes()
        threads = max(1, DEFAULT_THREADS // processes)
        if threads == torch.get_num_threads() and not always:
            return None
        torch.set_num_threads(threads)
        if processes == 1:
            return f"CPU threads: {threads} (alone on the CPU)"
        return f"CPU threads: {threads} ({processes} minigpt processes share {DEFAULT_THREADS} threads' worth of cores)"

    def stop(self) -> None:
        """Leave the registry and give the process back the thread count it had (a sweep runs
        many trials in one process)."""
        self.share.leave()
        torch.set_num_threads(self._before)


@contextmanager
def sharing_cores(threads: int | None = None) -> Iterator[ThreadPolicy]:
    """This process's share of the CPU while the block runs (for commands outside Lightning)."""
    policy = ThreadPolicy(threads)
    policy.start()
    try:
        yield policy
    finally:
        policy.stop()
