"""The Lightning callback that reports each validation to Optuna and stops unpromising trials.

Why not optuna-integration's PyTorchLightningPruningCallback: it reports at
`step=current_epoch`, and a minigpt run is one endless epoch validated every N steps, so every
validation would be reported at step 0 and Optuna would keep only the first. It also raises
TrialPruned inside the hook, before that validation's checkpoint is written. This one reports at
the global step, lets the trainer stop on its own (logs and last.ckpt closed as in any stopped
run), and keeps what the sweep records: steps run and time spent inside fit.
"""

from __future__ import annotations

import math
import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class PruningCallback(Callback):
    """Reports `objective` after every validation; stops the run when the pruner says so."""

    def __init__(self, trial: Any, objective: str) -> None:
        self.trial = trial
        self.objective = objective
        self.last_value: float | None = None
        self.last_step: int | None = None
        self.pruned_at: int | None = None
        self.steps = 0
        self.started = False  # fit began: an error from here on is the trial's, not its config's
        self.fit_seconds = 0.0
        self.log_dir: str | None = None  # the run's folder: config.yaml, checkpoints, TensorBoard
        self._fit_start: float | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.started = True
        self._fit_start = time.perf_counter()
        self.log_dir = trainer.log_dir

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._fit_start is not None:
            self.fit_seconds = time.perf_counter() - self._fit_start
        self.steps = trainer.global_step

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metric = trainer.callback_metrics.get(self.objective)
        if metric is None:
            return
        value = float(metric)
        step = trainer.global_step
        self.last_value, self.last_step, self.steps = value, step, step
        if not math.isfinite(value):
            return  # a NaN loss stops the run itself (model.on_nonfinite_loss)
        self.trial.report(value, step=step)
        # At the last step the run is done: its value is a full result, not one to cut short.
        if step < (trainer.max_steps or 0) and self.trial.should_prune():
            self.pruned_at = step
            trainer.should_stop = True
