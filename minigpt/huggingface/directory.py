"""A Hugging Face model directory, read: config.json, model.safetensors and tokenizer.json of a
GPT-2, a Llama, a Qwen2 or a Qwen3, as minigpt's GPTConfig, state dict and tokenizer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from minigpt.errors import MinigptError
from minigpt.huggingface.gpt2 import config_from_gpt2, state_dict_from_gpt2
from minigpt.huggingface.llama import FAMILIES, family_reader, state_dict_from_family
from minigpt.model import GPTConfig
from minigpt.tokenizers import PretrainedTokenizer, Tokenizer, read_tokenizer_json

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
# model_type -> (its config.json as a GPTConfig, its tensors as minigpt's state dict)
READERS: dict[str, tuple[Callable[..., GPTConfig], Callable[..., dict[str, torch.Tensor]]]] = {
    "gpt2": (config_from_gpt2, state_dict_from_gpt2),
    **{name: (family_reader(family), state_dict_from_family) for name, family in FAMILIES.items()},
}


def check_model_dir(directory: Path, key: str) -> None:
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise MinigptError(
            f"{key}: {directory} lacks {', '.join(missing)}; a model directory needs {', '.join(REQUIRED_FILES)} "
            "(as written by save_pretrained plus the tokenizer's tokenizer.json)"
        )


def read_model_config(directory: Path, key: str) -> GPTConfig:
    check_model_dir(directory, key)
    path = directory / "config.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        model_type = values.get("model_type")
        if model_type not in READERS:
            raise MinigptError(f"{path} describes a {model_type!r} model; minigpt loads {', '.join(READERS)} weights")
        return READERS[model_type][0](values, str(path))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise MinigptError(f"{path} is not a model config.json ({type(error).__name__}: {error})") from None


def read_model_tokenizer(directory: Path, key: str, config: GPTConfig) -> Tokenizer:
    """A model directory's tokenizer, with the end-of-text token its config.json names."""
    tokenizer = read_tokenizer_json(directory / "tokenizer.json", key)
    eos = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("eos_token_id")
    # The model's end-of-text token as its config names it (the first, where it names several).
    eos = eos[0] if isinstance(eos, list) and eos else eos
    if isinstance(tokenizer, PretrainedTokenizer) and isinstance(eos, int) and eos != tokenizer.eot_id:
        tokenizer = tokenizer.with_end_of_text(eos)
    assert config.vocab_size is not None  # every reader sets the sizes
    if tokenizer.vocab_size > config.vocab_size:
        raise MinigptError(
            f"{directory}: tokenizer.json has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size} embedding rows; the files come from different models"
        )
    return tokenizer


def read_model_weights(directory: Path, config: GPTConfig) -> dict[str, torch.Tensor]:
    """A model directory's weights under minigpt's names."""
    from safetensors.torch import load_file  # only needed here

    weights_path = directory / "model.safetensors"
    try:
        # Read into the process's own memory rather than mapped: a mapping would stay resident
        # for as long as one tensor lives on it, counting every weight the readers fuse (q/k/v,
        # gate/up) twice.
        tensors = load_file(weights_path, backend="pread")
    except Exception as error:  # safetensors raises its own SafetensorError for bad headers
        raise MinigptError(f"{weights_path} is not a readable safetensors file ({error})") from None
    model_type = json.loads((directory / "config.json").read_text(encoding="utf-8"))["model_type"]
    return READERS[model_type][1](tensors, config, str(weights_path))
