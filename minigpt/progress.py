"""What a run shows while it trains: a progress bar counted in steps, and TensorBoard
hyperparameters whose metrics are the run's real objective."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard.summary import hparams as hparams_summary

# Short labels keep the bar inside 80 columns; a metric not named here is not shown.
BAR_LABELS = {"train/loss": "loss", "val/loss": "val", "train/tokens_per_sec": "tok/s", "train/mfu": "mfu"}
# The objective every run is ranked by in TensorBoard's HParams tab: scalars the run logs.
HPARAM_METRICS = ("val/loss", "val/best_loss", "val/bits_per_char")


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

    def on_train_epoch_start(self, trainer: Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
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
        if bar is not None and self._should_update(trainer.global_step, bar.total):
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = trainer.progress_bar_metrics
        return {label: compact(float(metrics[name])) for name, label in BAR_LABELS.items() if name in metrics}


class RunLogger(TensorBoardLogger):
    """TensorBoard logs whose HParams tab ranks runs by their real objective.

    The hyperparameters are the model's, without LightningCLI's bookkeeping, plus `run_settings`
    (data and trainer settings the CLI fills in); their metrics are the validation scalars the run
    logs anyway (HPARAM_METRICS), rather than a constant `hp_metric`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "default_hp_metric": False})
        self.run_settings: dict[str, Any] = {}

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Mapping[str, Any] | None = None, step: int | None = None) -> None:
        # `gpt` is the config's architecture; run_settings holds the network's as built.
        values = {key: value for key, value in dict(params).items() if not key.startswith("_") and key != "gpt"}
        values.update(self.run_settings)
        self.hparams.update(values)
        shown = {key: displayable(value) for key, value in values.items()}
        for summary in hparams_summary(shown, {name: 0.0 for name in HPARAM_METRICS}):
            self.experiment._get_file_writer().add_summary(summary)


def displayable(value: Any) -> Any:
    """A value TensorBoard's HParams can show: numbers, strings and booleans as they are."""
    if value is None:
        return "none"
    return value if isinstance(value, bool | int | float | str) else str(value)


def run_settings(trainer: Trainer, module: LightningModule) -> dict[str, Any]:
    """What shapes a run, for TensorBoard's HParams tab: the network as built (sizes and
    init_from resolved), the data and the trainer settings."""
    datamodule = getattr(trainer, "datamodule", None)
    tokenizer = getattr(datamodule, "tokenizer", None)
    network = getattr(module, "model", None)
    config = network.config.to_dict() if network is not None else {}
    return {
        **config,
        "data": type(datamodule).__name__,
        "data.batch_size": getattr(datamodule, "batch_size", None),
        "data.block_size": getattr(datamodule, "block_size", None),
        "data.tokenizer": f"{tokenizer.kind}:{tokenizer.vocab_size}" if tokenizer is not None else None,
        "trainer.max_steps": trainer.max_steps,
        "trainer.precision": trainer.precision,
        "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches,
        "trainer.gradient_clip_val": trainer.gradient_clip_val,
        "trainer.world_size": trainer.world_size,
    }


class RunSettings(Callback):
    """Hands RunLogger the run's settings once the network exists (Lightning logs the
    hyperparameters right after `on_fit_start`)."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, RunLogger):
                logger.run_settings = run_settings(trainer, pl_module)
