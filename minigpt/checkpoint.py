"""Self-contained checkpoints: weights, model config and tokenizer, readable without Lightning.

A Lightning checkpoint written by minigpt carries a `minigpt` entry with the architecture name,
its config and the tokenizer JSON, so `load_checkpoint(path)` rebuilds a ready model from the
file alone.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minigpt.bigram import BigramConfig, BigramLM
from minigpt.errors import MinigptError
from minigpt.generation import Sampling, generate_texts, stream_text
from minigpt.model import GPT, GPTConfig
from minigpt.prompts import PromptStyle, style_by_name
from minigpt.tokenizers import Tokenizer, tokenizer_from_json

ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "gpt": (GPTConfig, GPT),
    "bigram": (BigramConfig, BigramLM),
}
METADATA_KEY = "minigpt"
MODEL_PREFIX = "model."  # the LightningModule holds the network as `self.model`


def build_model(arch: str, config: dict[str, Any]) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise MinigptError(f"unknown model.arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    config_class, model_class = ARCHITECTURES[arch]
    return model_class(config_class.from_dict(config))


def metadata(arch: str, model: nn.Module, tokenizer: Tokenizer, prompt_style: str | None = None) -> dict[str, Any]:
    """What a checkpoint needs to be used alone; `prompt_style` marks an instruction-tuned model."""
    meta = {"arch": arch, "model_config": model.config.to_dict(), "tokenizer": tokenizer.to_json()}
    if prompt_style is not None:
        meta["prompt_style"] = prompt_style
    return meta


def read_checkpoint(path: str | Path, key: str = "--ckpt_path") -> dict[str, Any]:
    """The raw checkpoint dict, with one-line errors for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise MinigptError(f"{key}: {path} does not exist; pass a .ckpt file written by minigpt fit")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError):
        raise MinigptError(
            f"{key}: {path} is not a readable checkpoint (truncated, corrupt or another kind of file); "
            "pass a .ckpt file written by minigpt fit"
        ) from None
    if not isinstance(checkpoint, dict) or METADATA_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise MinigptError(
            f"{key}: {path} is not a minigpt checkpoint (no model config or tokenizer inside); "
            "pass a .ckpt file written by minigpt fit"
        )
    return checkpoint


def network_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint's state dict (the module holds it as `model`)."""
    return {
        name.removeprefix(MODEL_PREFIX): tensor
        for name, tensor in checkpoint["state_dict"].items()
        if name.startswith(MODEL_PREFIX)
    }


def stored_tokenizer(checkpoint: dict[str, Any], path: str | Path) -> Tokenizer:
    """The tokenizer a checkpoint was trained with."""
    return tokenizer_from_json(checkpoint[METADATA_KEY]["tokenizer"], source=f"tokenizer in {path}")


@dataclass
class Checkpoint:
    model: nn.Module
    tokenizer: Tokenizer
    arch: str
    path: Path
    # The prompt style of instruction tuning (minigpt.prompts); None for a plain language model.
    prompt_style: str | None = None

    @property
    def style(self) -> PromptStyle | None:
        return (
            None if self.prompt_style is None else style_by_name(self.prompt_style, key=f"prompt style in {self.path}")
        )

    def _prompt_and_stops(self, prompt: str, stop: Sequence[str], wrap: bool) -> tuple[str, list[str]]:
        """The text the model continues: an instruction checkpoint's prompt in its saved style."""
        if not prompt:
            raise MinigptError("the prompt is empty; give at least one character")
        style = self.style if wrap else None
        if style is None:
            return prompt, list(stop)
        return style.format(prompt), [*stop, *style.stop_sequences]

    def stream(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        sampling: Sampling | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        wrap: bool = True,
    ) -> Iterator[str]:
        """The continuation of `prompt` (wrapped in the saved prompt style unless wrap=False), in pieces."""
        text, stops = self._prompt_and_stops(prompt, stop, wrap)
        return stream_text(self.model, self.tokenizer, text, max_new_tokens, sampling, stops, seed)

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        sampling: Sampling | None = None,
        stop: Sequence[str] = (),
        num_samples: int = 1,
        seed: int | None = None,
        wrap: bool = True,
    ) -> list[str]:
        """`num_samples` continuations of `prompt`, wrapped as `stream` does."""
        text, stops = self._prompt_and_stops(prompt, stop, wrap)
        return generate_texts(self.model, self.tokenizer, text, max_new_tokens, sampling, stops, num_samples, seed)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (in eval mode) and tokenizer stored in a minigpt checkpoint."""
    checkpoint = read_checkpoint(path)
    meta = checkpoint[METADATA_KEY]
    model = build_model(meta["arch"], meta["model_config"])
    try:
        model.load_state_dict(network_state(checkpoint))
    except RuntimeError as error:
        raise MinigptError(f"--ckpt_path: {path} has weights that do not fit its own model config ({error})") from None
    return Checkpoint(
        model=model.to(device).eval(),
        tokenizer=stored_tokenizer(checkpoint, path),
        arch=meta["arch"],
        path=Path(path),
        prompt_style=meta.get("prompt_style"),
    )
