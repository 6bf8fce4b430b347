"""Where starting weights and tokenizers come from: whatever `minigpt.checkpoint.open_source`
reads (a minigpt checkpoint, LoRA ones included, a Hugging Face model directory, a hub name),
plus tokenizer files for a data module's tokenizer.

`load_tokenizer(source)` gives a data module its tokenizer, `load_pretrained(source)` a
fine-tune its architecture, weights and tokenizer, and `build_network` the network a run trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from minigpt.bigram import BigramLM
from minigpt.checkpoint import ARCHITECTURES, build_model, fingerprint, fit_vocabulary, gpt_from_state, open_source
from minigpt.errors import MinigptError
from minigpt.huggingface.directory import REQUIRED_FILES
from minigpt.huggingface.hub import resolve_source
from minigpt.lora import KEY as LORA_KEY
from minigpt.lora import LoRAConfig, add_adapters
from minigpt.model import CONFIG_KEY, GPT, GPTConfig
from minigpt.tokenizers import Tokenizer, read_tokenizer_json, tokenizer_from_json

TOKENIZER_FILE = "tokenizer.json"
KEY = "model.init_from"


@dataclass
class Pretrained:
    config: GPTConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: Tokenizer
    source: str
    path: Path


def load_tokenizer(source: str, key: str = "tokenizer.path") -> Tokenizer:
    """The tokenizer of a minigpt checkpoint or a model directory (what `load_pretrained` gives
    with its weights), a tokenizer file (Hugging Face's tokenizer.json or one from `minigpt
    tokenizer train`), a folder holding tokenizer.json, or a hub name."""
    path = resolve_source(source, key, (TOKENIZER_FILE,))
    if path.suffix == ".ckpt" or (path.is_dir() and all((path / name).is_file() for name in REQUIRED_FILES)):
        return open_source(str(path), key).tokenizer
    if path.is_dir():
        if not (path / TOKENIZER_FILE).is_file():
            raise MinigptError(f"{key}: {path} has no {TOKENIZER_FILE}; pass a folder that holds one, or the file")
        path = path / TOKENIZER_FILE
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if isinstance(data, dict) and "kind" in data:
        return tokenizer_from_json(text, source=str(path))
    if isinstance(data, dict) and "model" in data:
        return read_tokenizer_json(path, key)
    raise MinigptError(
        f"{key}: {path} is not a tokenizer file (neither a Hugging Face tokenizer.json nor a minigpt tokenizer); "
        "pass a tokenizer.json or a file written by `minigpt tokenizer train`"
    )


def load_pretrained(source: str, key: str = KEY) -> Pretrained:
    """Architecture, weights and tokenizer to start a run from (a LoRA checkpoint's adapters
    folded into its base)."""
    opened = open_source(source, key)
    if opened.arch != "gpt":
        raise MinigptError(f"{key}: {opened.path} holds a {opened.arch} model; fine-tuning starts from GPT checkpoints")
    state = opened.network().state_dict() if opened.lora is not None else opened.state
    return Pretrained(opened.config, state, opened.tokenizer, source, opened.path)


def load_config(source: str, key: str = KEY) -> GPTConfig:
    """Only the architecture of a source."""
    return open_source(source, key).config


@dataclass
class Network:
    """A model ready to train, and what a run starting from weights must know about them."""

    model: GPT | BigramLM
    # The tokenizer the init_from weights were trained with (None from scratch): the data's must extend it.
    tokenizer: Tokenizer | None = None
    summary: str | None = None
    # With LoRA, what a checkpoint records of the base weights: {"base": source, "fingerprint": sha256}.
    lora_base: dict[str, str] | None = None


def build_network(
    arch: str,
    config: GPTConfig,
    init_from: str | None,
    vocab_size: int,
    block_size: int,
    lora: LoRAConfig | None = None,
) -> Network:
    """The network a run trains, for a tokenizer of `vocab_size` ids and windows of `block_size`
    tokens: from scratch with the architecture `config`, or `init_from`'s weights with rows for
    the tokens the data added, with LoRA adapters when `lora` is set."""
    if arch not in ARCHITECTURES:
        raise MinigptError(f"unknown model.arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if lora is not None and init_from is None:
        raise MinigptError(
            f"{LORA_KEY} adapts starting weights: fine-tune with --ckpt_path (finetune: true) or set model.init_from"
        )
    if init_from is not None:
        if arch != "gpt":
            raise MinigptError(f"model.init_from loads GPT weights; model.arch is {arch!r}, set it to gpt")
        return _start_from(init_from, config, vocab_size, block_size, lora)
    if arch == "bigram":
        return Network(build_model(arch, {"vocab_size": vocab_size, "block_size": block_size}))
    return Network(GPT(config.sized(vocab_size, block_size)))


# What a fine-tune may set differently from its starting weights: the rest shapes the weights.
TRAINING_FIELDS = ("vocab_size", "block_size", "dropout")


def _start_from(init_from: str, given: GPTConfig, vocab_size: int, block_size: int, lora: LoRAConfig | None) -> Network:
    source = load_pretrained(init_from)
    config = source.config
    assert config.vocab_size is not None and config.block_size is not None  # weights come with their sizes
    # A field still at its default was not chosen by the config: it takes the source's value.
    defaults = GPTConfig()
    for field in fields(GPTConfig):
        name = field.name
        value = getattr(given, name)
        if name in TRAINING_FIELDS or value == getattr(defaults, name) or value == getattr(config, name):
            continue
        raise MinigptError(
            f"{CONFIG_KEY}.{name} is {value} but model.init_from {init_from} has {getattr(config, name)}; "
            f"remove {CONFIG_KEY}.{name}: the architecture comes from the weights"
        )
    if block_size > config.block_size:
        raise MinigptError(
            f"data.block_size ({block_size}) is longer than the {config.block_size} positions of "
            f"model.init_from {init_from}; set data.block_size to {config.block_size} or less"
        )
    # Rows for tokens the data added (a grown character vocabulary); a source with more rows
    # than its tokenizer has tokens (a padded vocabulary) keeps them all. The model keeps all
    # the source's positions: shorter training windows use the first ones.
    rows = max(vocab_size, config.vocab_size, given.vocab_size or 0)
    sized = replace(config, vocab_size=rows, dropout=given.dropout)
    try:
        if rows == config.vocab_size:
            model = gpt_from_state(sized, source.state_dict)
        else:  # new tokens' rows start as a new model's would
            model = GPT(sized)
            model.load_state_dict(fit_vocabulary(source.state_dict, model.state_dict()))
    except RuntimeError as error:
        raise MinigptError(f"model.init_from: {init_from} has weights that do not fit its config ({error})") from None
    added = rows - config.vocab_size
    summary = (
        f"model.init_from: {init_from} ({model.num_parameters():,} parameters, {config.n_layer} layers; "
        f"{added} tokens added to its vocabulary)"
    )
    if lora is None:
        return Network(model, source.tokenizer, summary)
    # New tokens' rows could not learn through adapters: the embedding (and an untied head) train too.
    grown = (model.transformer.wte, model.lm_head) if added else ()
    trainable = add_adapters(model, lora, train=grown)
    summary += f"; LoRA rank {lora.rank} on {', '.join(lora.targets)}: {trainable:,} parameters train"
    base = {"base": init_from, "fingerprint": fingerprint(source.path)}
    return Network(model, source.tokenizer, summary, base)
