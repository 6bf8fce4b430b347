"""Callbacks the tests attach to `minigpt fit` runs in other processes, to see inside them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class StepProbe(Callback):
    """Writes the number of steps done to $MINIGPT_PROBE_DIR/steps after each step, for a test to wait on."""

    def __init__(self) -> None:
        self.folder = Path(os.environ["MINIGPT_PROBE_DIR"])

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        partial = self.folder / "steps.partial"
        partial.write_text(str(trainer.global_step))
        partial.replace(self.folder / "steps")  # whole, for a reader polling it


class RankProbe(Callback):
    """Writes, per rank, its data shard, first batch, torch threads and final weights to
    $MINIGPT_PROBE_DIR."""

    def __init__(self) -> None:
        self.folder = Path(os.environ["MINIGPT_PROBE_DIR"])
        self.first_batch: list | None = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.first_batch is None:
            self.first_batch = batch[0].tolist()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rank = trainer.global_rank
        dataset = trainer.train_dataloader.dataset
        info = {
            "rank": rank,
            "world_size": trainer.world_size,
            "shard": dataset.shard,
            "first_batch": self.first_batch,
            "threads": torch.get_num_threads(),
        }
        (self.folder / f"rank{rank}.json").write_text(json.dumps(info))
        torch.save(pl_module.model.state_dict(), self.folder / f"rank{rank}.pt")
