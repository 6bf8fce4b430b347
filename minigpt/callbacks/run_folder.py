"""No empty run folders: a fit that trained nothing leaves no `version_N` behind."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class RemoveEmptyRun(Callback):
    """A fit that ends, or fails, before finishing a step and before writing a checkpoint leaves
    no `version_N` folder behind: it would hold only the config and an empty log."""

    def __init__(self) -> None:
        self._stepped = False

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._stepped = True

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove_if_empty(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Resuming a run that had already reached max_steps trains nothing.
        self._remove_if_empty(trainer)

    def _remove_if_empty(self, trainer: Trainer) -> None:
        folder = Path(trainer.log_dir) if trainer.log_dir else None
        if self._stepped or not trainer.is_global_zero or folder is None or not folder.is_dir():
            return
        if not any(folder.rglob("*.ckpt")) and folder.resolve() != Path(trainer.default_root_dir).resolve():
            shutil.rmtree(folder, ignore_errors=True)
