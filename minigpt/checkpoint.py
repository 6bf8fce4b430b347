"""Self-contained checkpoints, and the one loader of everything a --ckpt_path or model.init_from
can name: a minigpt checkpoint, a Hugging Face model directory, or a hub name (downloaded into
the Hugging Face cache first).

A Lightning checkpoint written by minigpt carries a `minigpt` entry with the architecture name,
its config and the tokenizer JSON, so `load_checkpoint(path)` rebuilds a ready model from the
file alone. A LoRA checkpoint holds only what its run trained (the adapters) and the name and
fingerprint of its base weights, which it is rebuilt from.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minigpt.bigram import BigramConfig, BigramLM
from minigpt.errors import MinigptError
from minigpt.generation import TextGenerator
from minigpt.huggingface.directory import REQUIRED_FILES, read_model_config, read_model_tokenizer, read_model_weights
from minigpt.huggingface.hub import resolve_source
from minigpt.lora import LoRAConfig, add_adapters, merge_adapters
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizers import Tokenizer, tokenizer_from_json

# The network class of each architecture takes that architecture's config class (a pairing the
# type checker cannot follow, hence Any).
ARCHITECTURES: dict[str, tuple[type[GPTConfig] | type[BigramConfig], Callable[[Any], GPT | BigramLM]]] = {
    "gpt": (GPTConfig, GPT),
    "bigram": (BigramConfig, BigramLM),
}
METADATA_KEY = "minigpt"
MODEL_PREFIX = "model."  # the LightningModule holds the network as `self.model`


def build_model(arch: str, config: dict[str, Any]) -> GPT | BigramLM:
    if arch not in ARCHITECTURES:
        raise MinigptError(f"unknown model.arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    config_class, model_class = ARCHITECTURES[arch]
    return model_class(config_class.from_dict(config))


def metadata(arch: str, model: GPT | BigramLM, tokenizer: Tokenizer, prompt_style: str | None = None) -> dict[str, Any]:
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


def gpt_from_state(config: GPTConfig, state: dict[str, torch.Tensor]) -> GPT:
    """A GPT of `config` holding `state`, built without first drawing the random weights it
    would overwrite (on the meta device): one copy of a large model's weights in memory, not two."""
    with torch.device("meta"):
        model = GPT(config)
    model.load_state_dict({name: tensor.float() for name, tensor in state.items()}, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    return model


def weights_file(path: Path) -> Path:
    """The file that holds a source's weights: the checkpoint itself, or a directory's safetensors."""
    return path / "model.safetensors" if path.is_dir() else path


def fingerprint(path: Path) -> str:
    """sha256 of a source's weights file: a LoRA checkpoint only fits the very base it trained on."""
    digest = hashlib.sha256()
    with weights_file(path).open("rb") as file:
        while chunk := file.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Source:
    """What a --ckpt_path or model.init_from names, read: the architecture, the tokenizer, the
    prompt style, and the weights (`network()`), for a checkpoint or a model directory alike."""

    given: str
    path: Path
    key: str
    arch: str
    config: Any
    tokenizer: Tokenizer
    prompt_style: str | None = None
    # A LoRA checkpoint's adapters: {"base": source, "fingerprint": sha256, "config": LoRAConfig values}.
    lora: dict[str, Any] | None = None
    # Reads the weights when they are first wanted: a tokenizer alone never loads a large model.
    read_weights: Callable[[], dict[str, torch.Tensor]] = field(default=dict, repr=False)
    _state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def state(self) -> dict[str, torch.Tensor]:
        """The weights as stored (under minigpt's names)."""
        if self._state is None:
            self._state = self.read_weights()
        return self._state

    def network(self) -> GPT | BigramLM:
        """The model with its weights (a LoRA checkpoint's adapters folded into its base's)."""
        if self.lora is not None:
            return merge_adapters(self.adapted_network())
        if self.arch == "gpt":
            try:
                return gpt_from_state(self.config, self.state)
            except RuntimeError as error:
                raise MinigptError(
                    f"{self.key}: {self.path} has weights that do not fit its own model config ({error})"
                ) from None
        model = build_model(self.arch, self.config.to_dict())
        self._load_into(model, strict=True)
        return model

    def adapted_network(self) -> GPT | BigramLM:
        """A LoRA checkpoint's base weights with its adapters, unmerged (what its run trains)."""
        assert self.lora is not None
        base = lora_base(self).network()
        if base.config.vocab_size == self.config.vocab_size:
            model = base
        else:  # the run added tokens: their rows come from this checkpoint
            model = GPT(self.config)
            model.load_state_dict(fit_vocabulary(base.state_dict(), model.state_dict()))
        add_adapters(model, LoRAConfig.from_dict(self.lora["config"]))
        self._load_into(model, strict=False)
        return model

    def _load_into(self, model: nn.Module, strict: bool) -> None:
        try:
            result = model.load_state_dict(self.state, strict=strict)
        except RuntimeError as error:
            raise MinigptError(
                f"{self.key}: {self.path} has weights that do not fit its own model config ({error})"
            ) from None
        if not strict and result.unexpected_keys:
            raise MinigptError(f"{self.key}: {self.path} has weights its model lacks: {result.unexpected_keys[:3]}")


def lora_base(source: Source) -> Source:
    """The base weights a LoRA checkpoint's adapters were trained on, checked to be the same ones."""
    assert source.lora is not None
    base = source.lora["base"]
    where = f"{source.key}: {source.path} holds LoRA adapters for the base weights {base}"
    try:
        opened = open_source(base, key=f"{where}, but")
    except MinigptError as error:
        raise MinigptError(f"{error}; put the base back where it was to use the adapters") from None
    if source.lora.get("fingerprint") and fingerprint(opened.path) != source.lora["fingerprint"]:
        raise MinigptError(
            f"{where}, and {base} has changed since (its weights' sha256 differs); the adapters only fit the "
            "weights they were trained on"
        )
    return opened


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


def open_source(source: str | Path, key: str = "--ckpt_path") -> Source:
    """Read what `source` names: a minigpt .ckpt, a Hugging Face model directory or a hub name."""
    path = resolve_source(source, key, REQUIRED_FILES)
    if path.is_dir():
        config = read_model_config(path, key)
        tokenizer = read_model_tokenizer(path, key, config)
        return Source(
            str(source), path, key, "gpt", config, tokenizer, read_weights=lambda: read_model_weights(path, config)
        )
    checkpoint = read_checkpoint(path, key)
    meta = checkpoint[METADATA_KEY]
    config_class, _ = ARCHITECTURES.get(meta["arch"], (GPTConfig, GPT))
    return Source(
        given=str(source),
        path=path,
        key=key,
        arch=meta["arch"],
        config=config_class.from_dict(meta["model_config"]),
        tokenizer=stored_tokenizer(checkpoint, path),
        prompt_style=meta.get("prompt_style"),
        lora=meta.get("lora"),
        read_weights=lambda: network_state(checkpoint),
    )


@dataclass
class Checkpoint(TextGenerator):
    """A trained model, its tokenizer and prompt style, as `load_checkpoint` rebuilds them from a file."""

    arch: str = "gpt"
    path: Path | None = None


def load_checkpoint(source: str | Path, device: str | torch.device = "cpu", key: str = "--ckpt_path") -> Checkpoint:
    """The model (in eval mode) and tokenizer of a minigpt checkpoint (LoRA ones included), a
    Hugging Face model directory or a hub name such as gpt2."""
    opened = open_source(source, key)
    return Checkpoint(
        model=opened.network().to(device).eval(),
        tokenizer=opened.tokenizer,
        prompt_style=opened.prompt_style,
        arch=opened.arch,
        path=opened.path,
    )
