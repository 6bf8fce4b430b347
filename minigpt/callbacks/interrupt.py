"""Stopping cleanly on a signal: Ctrl-C or a scheduler's SIGTERM saves `last.ckpt` first."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class GracefulInterrupt(Callback):
    """On SIGINT or SIGTERM, finish the current step, save `last.ckpt` and stop.

    A second Ctrl-C stops at once (the last checkpoint written by validation stays). Under DDP
    the ranks agree on stopping at the same step, so none is left waiting for the others.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self.checkpoint_path: Path | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum)
        print(f"\nminigpt: {self.signal.name} received; stopping after this step", file=sys.stderr, flush=True)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Installed after Lightning's own SIGTERM handler (set up before training starts), which
        # would otherwise end the process without a checkpoint.
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._request_stop)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        requested = self.signal is not None
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested:
            return
        checkpointer = trainer.checkpoint_callback
        folder = (
            checkpointer.dirpath
            if isinstance(checkpointer, ModelCheckpoint) and checkpointer.dirpath
            else trainer.default_root_dir
        )
        self.checkpoint_path = Path(folder) / "last.ckpt"
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        if isinstance(checkpointer, ModelCheckpoint):
            # Claimed as its own, the checkpointer overwrites this file rather than writing last-v1.ckpt.
            checkpointer.last_model_path = str(self.checkpoint_path)
        # The run ends here as if this step were its last: the step finishes as it would in an
        # uninterrupted run (its logging, a validation due at it) and nothing is added. Stopping
        # with should_stop instead would make Lightning log this step although it is off the
        # log_every_n_steps grid, and validate although no validation is due.
        trainer.fit_loop.epoch_loop.max_steps = trainer.global_step
