"""A CPU run's torch threads, shared with the other minigpt processes on the machine."""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from minigpt.cpu_registry import PROCESS_ENTRY
from minigpt.errors import MinigptError
from minigpt.threads import ThreadPolicy

# How often an adaptive run looks whether other minigpt processes started or ended beside it.
THREAD_CHECK_SECONDS = 2.0


class CpuThreads(Callback):
    """Shares the CPU with the other minigpt processes computing on it (see minigpt.threads).

    The count is chosen when the run starts and kept to its end, and a resumed run takes the
    count its checkpoint's run had: a run computes what an undisturbed run computes, whatever
    other minigpt processes start or stop beside it.

    Args:
        threads: Torch threads for this run. Unset, minigpt chooses: all of torch's threads when
            the run starts alone on the CPU, an even share of them when other minigpt processes
            (parallel runs, sweep workers, DDP ranks) compute beside it; OMP_NUM_THREADS set in
            the environment is kept.
        adaptive: Follow the other processes as they start and end (checked every two seconds)
            instead of keeping the count: faster when runs come and go, but the arithmetic of a
            run then depends on what ran beside it, and a resumed run is no longer exact.
    """

    def __init__(self, threads: int | None = None, adaptive: bool = False) -> None:
        if threads is not None and threads < 1:
            raise MinigptError(f"cpu.threads must be 1 or more, got {threads}")
        self.threads = threads
        self.adaptive = adaptive
        self._policy: ThreadPolicy | None = None
        self._checked = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._policy is not None:
            return
        if trainer.strategy.root_device.type != "cpu":
            PROCESS_ENTRY.leave()  # joined as the command started, in case the run computed here
            return
        self._policy = ThreadPolicy(self.threads, share=PROCESS_ENTRY, adaptive=self.adaptive)
        rank_zero_info(f"minigpt: {self._policy.start()}")
        self._checked = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        if self._policy is None or not self._policy.automatic:
            return {}
        return {"threads": torch.get_num_threads()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Called as a run resumes, after `setup`: it computes with the count it had.
        if self._policy is not None and not self.adaptive and "threads" in state_dict:
            change = self._policy.restore(int(state_dict["threads"]))
            if change:
                rank_zero_info(f"minigpt: {change}")

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._policy is None or not self.adaptive or time.monotonic() - self._checked < THREAD_CHECK_SECONDS:
            return
        self._checked = time.monotonic()
        change = self._policy.update()
        if change:
            rank_zero_info(f"minigpt: {change}")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._policy is not None:
            self._policy.stop()
            self._policy = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "exception")
