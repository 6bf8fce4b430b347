"""Optimizer parameter groups and learning-rate schedules (plain PyTorch)."""

from __future__ import annotations

import math
from typing import Any

from torch import nn


def adamw_groups(roles: dict[str, list[nn.Parameter]], weight_decay: float, **extra: Any) -> list[dict[str, Any]]:
    """AdamW parameter groups from a model's `parameter_roles()`: matrices and embeddings are
    decayed, gains and biases are not. Empty groups are left out; `extra` goes into each group."""
    decayed = roles["matrices"] + roles["embeddings"]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": roles["gains"], "weight_decay": 0.0}]
    return [{**group, **extra} for group in groups if group["params"]]


def warmup_cosine(step: int, warmup_steps: int, decay_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1, cosine decay to `min_ratio` at `decay_steps`, flat after."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_ratio
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * progress))
