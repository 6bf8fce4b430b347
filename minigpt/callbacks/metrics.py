"""Training scalars minigpt logs besides the loss: tokens/s and MFU, learning rate and gradient
norm."""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

# Dense bf16 peak FLOP/s per device, for MFU. Unknown devices get no MFU rather than a guess.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "RTX 4090": 165e12,
}


def logging_interval(trainer: Trainer) -> int:
    """trainer.log_every_n_steps, which Lightning sets on the Trainer without declaring it there."""
    return trainer.log_every_n_steps  # type: ignore[attr-defined]


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


class ThroughputLogger(Callback):
    """Logs training tokens/s (all ranks together) and, on known GPUs, MFU.

    Lightning's ThroughputMonitor synchronises CUDA after every batch; this measures over the
    logging interval instead, so the GPU queue never drains just to be timed. Validation time is
    left out of the window.
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._tokens = 0

    def _restart(self) -> None:
        self._start, self._tokens = None, 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._start is None:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._tokens += batch[0].numel()
        if trainer.global_step % logging_interval(trainer) != 0 or self._start is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._start
        tokens_per_sec = self._tokens * trainer.world_size / elapsed
        pl_module.log("train/tokens_per_sec", tokens_per_sec, prog_bar=True, rank_zero_only=True)
        peak = peak_flops(pl_module.device)
        flops_per_token = getattr(pl_module.model, "flops_per_token", None)
        if peak and flops_per_token:
            mfu = flops_per_token() * tokens_per_sec / (peak * trainer.world_size)
            pl_module.log("train/mfu", mfu, prog_bar=True, rank_zero_only=True)
        self._restart()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restart()


class OptimizationLogger(Callback):
    """Logs `train/lr` (the first parameter group's) and `train/grad_norm` (before clipping)
    every `log_every_n_steps` steps."""

    def __init__(self) -> None:
        self._grad_norm: torch.Tensor | None = None

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        # Measured only on the steps that are logged, after AMP has unscaled the gradients.
        if (trainer.global_step + 1) % logging_interval(trainer) == 0:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self._grad_norm = torch.nn.utils.get_total_norm(grads) if grads else None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % logging_interval(trainer) != 0:
            return
        pl_module.log("train/lr", trainer.optimizers[0].param_groups[0]["lr"])
        if self._grad_norm is not None:
            pl_module.log("train/grad_norm", self._grad_norm)
            self._grad_norm = None
