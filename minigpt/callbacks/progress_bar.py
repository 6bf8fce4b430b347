"""The progress bar of a run: optimizer steps towards trainer.max_steps, in 80 columns."""

from __future__ import annotations

import math
from typing import Any, cast

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

# Short labels keep the bar inside 80 columns; a metric not named here is not shown.
BAR_LABELS = {"train/loss": "loss", "val/loss": "val", "train/tokens_per_sec": "tok/s", "train/mfu": "mfu"}


def compact(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:.4g}"


class StepProgressBar(TQDMProgressBar):
    """Counts optimizer steps towards trainer.max_steps (a resumed run starts where it stopped)
    instead of batches of a never-ending epoch, and shows loss, validation loss and tokens/s in
    80 columns."""

    TRAIN_FORMAT = "step {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}"

    def init_train_tqdm(self) -> Any:
        bar = super().init_train_tqdm()
        bar.bar_format = self.TRAIN_FORMAT
        return bar

    def on_train_start(self, trainer: Trainer, *args: Any) -> None:
        # A run resumed mid-epoch (every minigpt run is one endless epoch) gets no
        # on_train_epoch_start: the bar is counted in steps here as well.
        super().on_train_start(trainer, *args)
        self._count_steps(trainer)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._count_steps(trainer)

    def _count_steps(self, trainer: Trainer) -> None:
        if trainer.max_steps > 0:
            self.train_progress_bar.reset(total=trainer.max_steps)
            self.train_progress_bar.n = self.train_progress_bar.initial = trainer.global_step
        self.train_progress_bar.set_description("")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.max_steps <= 0:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        bar = self.train_progress_bar
        # _count_steps set the bar's total to trainer.max_steps.
        if bar is not None and self._should_update(trainer.global_step, cast(int, bar.total)):
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = trainer.progress_bar_metrics
        return {label: compact(float(metrics[name])) for name, label in BAR_LABELS.items() if name in metrics}
