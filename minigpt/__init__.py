"""minigpt: train small GPT language models end to end with PyTorch Lightning."""

from minigpt.checkpoint import Checkpoint, load_checkpoint
from minigpt.errors import MinigptError
from minigpt.generation import Sampling, generate, generate_text, generate_texts, stream_text
from minigpt.model import GPT, PRESETS, GPTConfig

__all__ = [
    "GPT",
    "PRESETS",
    "Checkpoint",
    "GPTConfig",
    "MinigptError",
    "Sampling",
    "generate",
    "generate_text",
    "generate_texts",
    "load_checkpoint",
    "stream_text",
]
