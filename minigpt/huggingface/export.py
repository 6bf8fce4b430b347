"""A minigpt model as a Hugging Face model directory that transformers reads exactly.

Written: `config.json` and `model.safetensors` (the architecture transformers knows for the
model's options), `tokenizer.json` (the same ids for every text), `tokenizer_config.json` and
`special_tokens_map.json` (so `AutoTokenizer` builds a fast tokenizer from that file, not a
GPT-2 tokenizer with its own pre-tokenizer; the chat template `minigpt serve` uses rides along,
so `apply_chat_template` builds the same prompt), and `generation_config.json` (the end-of-text id
that stops generation and, for learned positions, the context where a call without a length
stops).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minigpt.errors import MinigptError
from minigpt.huggingface.chat_template import chat_template_for
from minigpt.huggingface.gpt2 import gpt2_config, gpt2_differences, gpt2_tensors
from minigpt.huggingface.llama import FAMILIES, family_config, family_tensors
from minigpt.model import GPT, GPTConfig
from minigpt.prompts import PromptStyle
from minigpt.tokenizers import PretrainedTokenizer, Tokenizer, minigpt_settings_path

EXPORTED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


@dataclass(frozen=True)
class Architecture:
    """A layout transformers knows: what it cannot hold of a GPTConfig, its config.json and weights."""

    name: str
    differences: Callable[[GPTConfig], list[str]]
    config: Callable[[GPTConfig], dict[str, Any]]
    tensors: Callable[[GPT], dict[str, torch.Tensor]]


ARCHITECTURES = (
    Architecture("GPT2LMHeadModel", gpt2_differences, gpt2_config, gpt2_tensors),
    *(
        Architecture(family.architecture, family.differences, family_config(family), family_tensors)
        for family in FAMILIES.values()
    ),
)


def architecture_for(config: GPTConfig) -> Architecture:
    """The architecture whose layout the model has, or a one-line refusal naming the options."""
    for architecture in ARCHITECTURES:
        if not architecture.differences(config):
            return architecture
    nearest = min(ARCHITECTURES, key=lambda architecture: len(architecture.differences(config)))
    raise MinigptError(
        f"no Hugging Face architecture has this model's {', '.join(nearest.differences(config))} "
        f"({nearest.name} is the nearest); export writes GPT-2's layout (learned positions, layernorm, gelu, "
        "tied head), Llama's (rope, rmsnorm, swiglu), Qwen2's (Llama's with biases on q, k and v alone) or "
        "Qwen3's (Llama's with qk_norm), without logit_softcap or value_embeddings"
    )


def special_tokens(tokenizer: Tokenizer) -> dict[str, tuple[str, int]]:
    """Hugging Face's names for the tokenizer's special tokens: (text, id) of eos, bos and pad."""
    found = {}
    if tokenizer.eot_id is not None:
        eot = (tokenizer.decode([tokenizer.eot_id]), tokenizer.eot_id)
        # GPT-2 starts and ends documents with the same token.
        found["eos_token"] = found["bos_token"] = eot
    if tokenizer.pad_id is not None:
        found["pad_token"] = (tokenizer.decode([tokenizer.pad_id]), tokenizer.pad_id)
    return found


def tokenizer_config(tokenizer: Tokenizer, block_size: int, style: PromptStyle | None = None) -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": block_size,
        # Decoding must give back the exact text: no space clean-up, no prefix space.
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        **{name: text for name, (text, _) in special_tokens(tokenizer).items()},
        "chat_template": chat_template_for(style),
    }


def token_ids(tokenizer: Tokenizer) -> dict[str, int | None]:
    """`bos_token_id`, `eos_token_id` and `pad_token_id` for config.json and generation_config.json."""
    specials = special_tokens(tokenizer)
    return {
        f"{name}_id": specials[name][1] if name in specials else None
        for name in ("bos_token", "eos_token", "pad_token")
    }


def generation_config(config: GPTConfig, ids: dict[str, int | None]) -> dict[str, Any]:
    values: dict[str, Any] = {**{name: value for name, value in ids.items() if value is not None}, "do_sample": False}
    if config.position == "learned":
        # Past its position table GPT-2 fails with an IndexError: a call that sets no length
        # (the pipeline's default is 256 new tokens) stops at the context instead.
        values["max_length"] = config.block_size
    return values


def write_json(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_model(
    model: nn.Module, tokenizer: Tokenizer, out: Path, style: PromptStyle | None = None
) -> tuple[str, ...]:
    """Write `model` and `tokenizer` to the directory `out`; the names of the files written.
    `style`, an instruction-tuned model's prompt style, shapes the chat template."""
    from safetensors.torch import save_file  # only needed here

    if not isinstance(model, GPT):
        raise MinigptError(f"only GPT checkpoints export to Hugging Face format, not {type(model).__name__}")
    architecture = architecture_for(model.config)
    out.mkdir(parents=True, exist_ok=True)
    ids = token_ids(tokenizer)
    save_file(architecture.tensors(model), out / "model.safetensors", metadata={"format": "pt"})
    write_json(out / "config.json", {**architecture.config(model.config), **ids})
    (out / "tokenizer.json").write_text(tokenizer.to_huggingface(), encoding="utf-8")
    written = list(EXPORTED_FILES)
    if not isinstance(tokenizer, PretrainedTokenizer):
        # minigpt's own kind beside it, so that minigpt reads the directory back as it was
        # (a character vocabulary that grows for a fine-tune); other tools read tokenizer.json.
        settings = minigpt_settings_path(out / "tokenizer.json")
        settings.write_text(tokenizer.to_json(), encoding="utf-8")
        written.append(settings.name)
    assert model.config.block_size is not None  # a GPT's config has its sizes
    write_json(out / "tokenizer_config.json", tokenizer_config(tokenizer, model.config.block_size, style))
    write_json(out / "special_tokens_map.json", {name: text for name, (text, _) in special_tokens(tokenizer).items()})
    write_json(out / "generation_config.json", generation_config(model.config, ids))
    # safetensors writes its file readable by its owner only; give every file the usual mode.
    umask = os.umask(0)
    os.umask(umask)
    for name in written:
        os.chmod(out / name, 0o666 & ~umask)
    return tuple(written)
