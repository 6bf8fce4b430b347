"""Self-contained checkpoints: weights, model config and tokenizer, readable without Lightning.

A Lightning checkpoint written by minigpt carries a `minigpt` entry with the architecture name,
its config and the tokenizer JSON, so `load_checkpoint(path)` rebuilds a ready model from the
file alone.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minigpt.bigram import BigramConfig, BigramLM
from minigpt.errors import MinigptError
from minigpt.generation import TextGenerator
from minigpt.huggingface.directory import REQUIRED_FILES, read_model_dir
from minigpt.huggingface.hub import resolve_source
from minigpt.model import GPT, GPTConfig
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
    if path.is_dir():
        raise MinigptError(f"{key}: {path} is a folder; pass a .ckpt file written by minigpt fit")
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
class Checkpoint(TextGenerator):
    """A trained model, its tokenizer and prompt style, as `load_checkpoint` rebuilds them from a file."""

    arch: str = "gpt"
    path: Path | None = None


def load_checkpoint(source: str | Path, device: str | torch.device = "cpu", key: str = "--ckpt_path") -> Checkpoint:
    """The model (in eval mode) and tokenizer of a minigpt checkpoint, a Hugging Face GPT-2
    directory or a hub name such as gpt2."""
    path = resolve_source(source, key, REQUIRED_FILES)
    if path.is_dir():
        config, state, tokenizer = read_model_dir(path, key)
        model = GPT(config)
        model.load_state_dict(state)
        return Checkpoint(model=model.to(device).eval(), tokenizer=tokenizer, arch="gpt", path=path)
    checkpoint = read_checkpoint(path, key)
    meta = checkpoint[METADATA_KEY]
    model = build_model(meta["arch"], meta["model_config"])
    try:
        model.load_state_dict(network_state(checkpoint))
    except RuntimeError as error:
        raise MinigptError(f"{key}: {path} has weights that do not fit its own model config ({error})") from None
    return Checkpoint(
        model=model.to(device).eval(),
        tokenizer=stored_tokenizer(checkpoint, path),
        arch=meta["arch"],
        path=Path(path),
        prompt_style=meta.get("prompt_style"),
    )
