"""minigpt: train small GPT language models end to end with PyTorch Lightning."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minigpt.checkpoint import Checkpoint, load_checkpoint
    from minigpt.errors import MinigptError
    from minigpt.generation import generate, generate_text
    from minigpt.model import GPT, PRESETS, GPTConfig

# Imported on first use: tokenizer worker processes import `minigpt` and must not pay for torch.
_HOMES = {
    "GPT": "minigpt.model",
    "PRESETS": "minigpt.model",
    "GPTConfig": "minigpt.model",
    "Checkpoint": "minigpt.checkpoint",
    "load_checkpoint": "minigpt.checkpoint",
    "MinigptError": "minigpt.errors",
    "generate": "minigpt.generation",
    "generate_text": "minigpt.generation",
}

__all__ = [
    "GPT",
    "PRESETS",
    "Checkpoint",
    "GPTConfig",
    "MinigptError",
    "generate",
    "generate_text",
    "load_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'minigpt' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
