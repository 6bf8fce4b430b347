"""TensorBoard's HParams tab: each run's settings against the objective it reached."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard.summary import hparams as hparams_summary

# The objective every run is ranked by in TensorBoard's HParams tab: scalars the run logs.
HPARAM_METRICS = ("val/loss", "val/best_loss", "val/bits_per_char")


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
        # An unset value (muon_lr: null) is left out rather than written as a word: TensorBoard
        # types a column by its values, and "none" beside 0.003 would make it a column of text.
        shown = {key: displayable(value) for key, value in values.items() if value is not None}
        for summary in hparams_summary(shown, {name: 0.0 for name in HPARAM_METRICS}):
            self.experiment._get_file_writer().add_summary(summary)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        # Lightning adds `epoch` to every point it logs; a minigpt run is one endless epoch, so
        # that would be a second, always-zero scalar at every step that logs anything.
        super().log_metrics({name: value for name, value in metrics.items() if name != "epoch"}, step)


def displayable(value: Any) -> bool | int | float | str:
    """A value TensorBoard's HParams can show: numbers, strings and booleans as they are."""
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
