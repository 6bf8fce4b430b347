"""Where starting weights and tokenizers come from: a minigpt checkpoint, a Hugging Face file or
directory, or a hub name (downloaded into the Hugging Face cache).

One loader each: `load_tokenizer(source)` for a data module's tokenizer, `load_pretrained(source)`
for a fine-tune's weights, config and tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from minigpt.checkpoint import ARCHITECTURES, build_model, network_state, read_checkpoint, stored_tokenizer
from minigpt.errors import MinigptError, first_line
from minigpt.huggingface.directory import REQUIRED_FILES, read_model_config, read_model_dir
from minigpt.huggingface.hub import resolve_source
from minigpt.model import CONFIG_KEY, GPT, GPTConfig
from minigpt.tokenizers import PretrainedTokenizer, Tokenizer, minigpt_settings_path, tokenizer_from_json

TOKENIZER_FILE = "tokenizer.json"
KEY = "model.init_from"


@dataclass
class Pretrained:
    config: GPTConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: Tokenizer
    source: str


def load_tokenizer(source: str, key: str = "tokenizer.path") -> Tokenizer:
    """The tokenizer of a minigpt checkpoint, a tokenizer file (Hugging Face's tokenizer.json or one
    from `minigpt tokenizer train`), a Hugging Face directory holding tokenizer.json, or a hub name."""
    path = resolve_source(source, key, (TOKENIZER_FILE,))
    if path.is_dir():
        if not (path / TOKENIZER_FILE).is_file():
            raise MinigptError(f"{key}: {path} has no {TOKENIZER_FILE}; pass a folder that holds one, or the file")
        path = path / TOKENIZER_FILE
    if path.suffix == ".ckpt":
        return stored_tokenizer(read_checkpoint(path, key), path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if isinstance(data, dict) and "kind" in data:
        return tokenizer_from_json(text, source=str(path))
    if isinstance(data, dict) and "model" in data:
        settings = minigpt_settings_path(path)
        if settings.is_file():
            # Written beside it by `minigpt tokenizer train`: the same tokenizer as its own kind.
            own = tokenizer_from_json(settings.read_text(encoding="utf-8"), source=str(settings))
            if json.loads(own.to_huggingface()) == data:
                return own
        return PretrainedTokenizer.from_file(path, key)
    raise MinigptError(
        f"{key}: {path} is not a tokenizer file (neither a Hugging Face tokenizer.json nor a minigpt tokenizer); "
        "pass a tokenizer.json or a file written by `minigpt tokenizer train`"
    )


def load_pretrained(source: str, key: str = KEY) -> Pretrained:
    """Architecture, weights and tokenizer to start a run from."""
    path = resolve_source(source, key, REQUIRED_FILES)
    if path.is_dir():
        config, state, tokenizer = read_model_dir(path, key)
        return Pretrained(config, state, tokenizer, source)
    checkpoint = read_checkpoint(path, key=key)
    meta = checkpoint["minigpt"]
    if meta["arch"] != "gpt":
        raise MinigptError(f"{key}: {path} holds a {meta['arch']} model; fine-tuning starts from GPT checkpoints")
    config = GPTConfig.from_dict(meta["model_config"])
    return Pretrained(config, network_state(checkpoint), stored_tokenizer(checkpoint, path), source)


def load_config(source: str, key: str = KEY) -> GPTConfig:
    """Only the architecture of a source (a checkpoint's config, a GPT-2 directory's config.json)."""
    path = resolve_source(source, key, REQUIRED_FILES)
    if path.is_dir():
        return read_model_config(path, key)
    return GPTConfig.from_dict(read_checkpoint(path, key=key)["minigpt"]["model_config"])


def fit_vocabulary(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with its token rows grown to the sizes in `fresh` (a newly initialised model's).

    Tokens the source knows keep their rows; tokens added for the new corpus keep the fresh
    initialisation, which is what they would have in a model trained from scratch.
    """
    grown = dict(state)
    for name in ("transformer.wte.weight", "lm_head.weight"):
        old, new = state[name], fresh[name]
        if old.shape[0] < new.shape[0]:
            rows = new.clone()
            rows[: old.shape[0]] = old
            grown[name] = rows
    return grown


@dataclass
class Network:
    """A model ready to train, and what a run starting from weights must know about them."""

    model: nn.Module
    # The tokenizer the init_from weights were trained with (None from scratch): the data's must extend it.
    tokenizer: Tokenizer | None = None
    summary: str | None = None


def build_network(arch: str, config: GPTConfig, init_from: str | None, vocab_size: int, block_size: int) -> Network:
    """The network a run trains, for a tokenizer of `vocab_size` ids and windows of `block_size`
    tokens: from scratch with the architecture `config`, or `init_from`'s weights with rows for
    the tokens the data added."""
    if arch not in ARCHITECTURES:
        raise MinigptError(f"unknown model.arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if init_from is not None:
        if arch != "gpt":
            raise MinigptError(f"model.init_from loads GPT weights; model.arch is {arch!r}, set it to gpt")
        return _start_from(init_from, config, vocab_size, block_size)
    if arch == "bigram":
        return Network(build_model(arch, {"vocab_size": vocab_size, "block_size": block_size}))
    return Network(GPT(config.sized(vocab_size, block_size)))


# What a fine-tune may set differently from its starting weights: the rest shapes the weights.
TRAINING_FIELDS = ("vocab_size", "block_size", "dropout")


def _start_from(init_from: str, given: GPTConfig, vocab_size: int, block_size: int) -> Network:
    source = load_pretrained(init_from)
    config = source.config
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
    model = GPT(replace(config, vocab_size=rows, dropout=given.dropout))
    try:
        model.load_state_dict(fit_vocabulary(source.state_dict, model.state_dict()))
    except RuntimeError as error:
        raise MinigptError(
            f"model.init_from: {init_from} has weights that do not fit its config ({first_line(error)})"
        ) from None
    summary = (
        f"model.init_from: {init_from} ({model.num_parameters():,} parameters, {config.n_layer} layers; "
        f"{rows - config.vocab_size} tokens added to its vocabulary)"
    )
    return Network(model, source.tokenizer, summary)
