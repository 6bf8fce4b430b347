"""Optimizers and learning-rate schedules from a model's parameter roles (plain PyTorch).

`model.optimizer: adamw` trains every parameter with AdamW; `muon` gives the blocks' matrices to
Muon (minigpt.muon) at their own peak learning rate and the rest to AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from minigpt.muon import MuonAdamW

OPTIMIZERS = ("adamw", "muon")


def adamw_groups(roles: dict[str, list[nn.Parameter]], weight_decay: float, **extra: Any) -> list[dict[str, Any]]:
    """AdamW parameter groups from a model's `parameter_roles()`: matrices and embeddings are
    decayed, gains and biases are not. Empty groups are left out; `extra` goes into each group."""
    decayed = roles["matrices"] + roles["embeddings"] + roles.get("adapters", [])
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": roles["gains"], "weight_decay": 0.0}]
    return [{**group, **extra} for group in groups if group["params"]]


def optimizer_groups(
    roles: dict[str, list[nn.Parameter]],
    optimizer: str,
    lr: float,
    weight_decay: float,
    muon_lr: float | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups, each with its peak `lr`: for AdamW, decayed and not; for Muon, the
    matrices (at `muon_lr`, by default `lr`) apart from AdamW's embeddings and gains."""
    if optimizer == "adamw":
        return adamw_groups(roles, weight_decay, lr=lr, algorithm="adamw")
    matrices = {"params": roles["matrices"], "algorithm": "muon", "lr": lr if muon_lr is None else muon_lr}
    rest = adamw_groups({**roles, "matrices": []}, weight_decay, lr=lr, algorithm="adamw")
    return [{**matrices, "weight_decay": weight_decay}, *rest] if roles["matrices"] else rest


def build_optimizer(
    groups: list[dict[str, Any]],
    optimizer: str,
    betas: tuple[float, float],
    ns_dtype: torch.dtype = torch.float32,
    mixed_precision: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer for `groups`. Under mixed precision AdamW is the multi-tensor (foreach) one:
    Lightning refuses to clip the gradients of a fused optimizer there, since fp16's fused step
    unscales them itself, after any clipping."""
    if optimizer == "adamw":
        if mixed_precision:
            return torch.optim.AdamW(groups, betas=betas, foreach=True)
        # The fused kernel updates every parameter in one pass (see benchmarks/README.md for its speed).
        return torch.optim.AdamW(groups, betas=betas, fused=True)
    return MuonAdamW(groups, betas=betas, ns_dtype=ns_dtype)


# A schedule maps (step, warmup_steps, decay_steps, min_ratio, cooldown) to the multiplier of the
# peak learning rate. Every schedule warms up linearly; cosine and linear then hold the peak and
# decay over the last `cooldown` fraction of the steps up to `decay_steps` (1.0: all of them; less:
# warmup-stable-decay, the trapezoid), end at `min_ratio` there and stay. `model.lr_schedule` picks one.
Schedule = Callable[[int, int, int, float, float], float]


def _warmup(step: int, warmup_steps: int) -> float:
    return (step + 1) / (warmup_steps + 1)


def _decay_progress(step: int, warmup_steps: int, decay_steps: int, cooldown: float) -> float:
    """How far into its decay the schedule is at `step`: 0 until the cooldown starts, 1 at its end."""
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min(1.0, max(0.0, (progress - (1.0 - cooldown)) / cooldown))


def warmup_cosine(step: int, warmup_steps: int, decay_steps: int, min_ratio: float, cooldown: float = 1.0) -> float:
    """Linear warmup to 1, cosine decay to `min_ratio` at `decay_steps`, flat after."""
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    progress = _decay_progress(step, warmup_steps, decay_steps, cooldown)
    return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * progress))


def warmup_linear(step: int, warmup_steps: int, decay_steps: int, min_ratio: float, cooldown: float = 1.0) -> float:
    """Linear warmup to 1, linear decay to `min_ratio` at `decay_steps`, flat after."""
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    return 1.0 - (1.0 - min_ratio) * _decay_progress(step, warmup_steps, decay_steps, cooldown)


def warmup_constant(step: int, warmup_steps: int, decay_steps: int, min_ratio: float, cooldown: float = 1.0) -> float:
    """Linear warmup to 1, then constant: no decay."""
    return _warmup(step, warmup_steps) if step < warmup_steps else 1.0


SCHEDULES: dict[str, Schedule] = {"cosine": warmup_cosine, "linear": warmup_linear, "constant": warmup_constant}
