"""minigpt: train small GPT language models end to end with PyTorch Lightning."""

from minigpt.checkpoint import Checkpoint, load_checkpoint
from minigpt.errors import MinigptError
from minigpt.generation import generate, generate_text
from minigpt.model import GPT, PRESETS, GPTConfig

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
