"""Where a fine-tune's starting weights and tokenizer come from (`model.init_from`).

A source is a minigpt checkpoint (`.ckpt`), a Hugging Face GPT-2 directory (`config.json`,
`model.safetensors`, `tokenizer.json`), or a hub name such as `gpt2`, downloaded into the
Hugging Face cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.checkpoint import METADATA_KEY, MODEL_PREFIX, read_checkpoint
from minigpt.errors import MinigptError
from minigpt.hf_gpt2 import REQUIRED_FILES, read_gpt2_dir
from minigpt.model import GPTConfig
from minigpt.tokenizers import CharTokenizer, PretrainedTokenizer, Tokenizer, tokenizer_from_json

HUB_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
KEY = "model.init_from"


@dataclass
class Pretrained:
    config: GPTConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: Tokenizer
    source: str


def download_from_hub(name: str, key: str = KEY) -> Path:
    """The local snapshot of hub model `name` (only the three files minigpt reads)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=list(REQUIRED_FILES)))
    except Exception as error:  # offline, unknown repo, no access: all end the same way for a user
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MinigptError(
            f"{key}: could not download {name!r} from the Hugging Face hub ({reason}); download it where there "
            f"is internet (huggingface-cli download {name} {' '.join(REQUIRED_FILES)} --local-dir DIR) "
            f"and pass {key}=DIR"
        ) from None


def check_source(source: str, key: str = KEY) -> None:
    """Refuse, naming `key`, a source that is neither an existing path nor a hub name."""
    if not Path(source).expanduser().exists() and (not HUB_NAME.match(source) or source.endswith(".ckpt")):
        raise MinigptError(
            f"{key}: {source} does not exist; pass a minigpt .ckpt file, a GPT-2 directory or a hub name like gpt2"
        )


def resolve_source(source: str, key: str = KEY) -> Path:
    """A local checkpoint file or GPT-2 directory for `source`, downloading a hub name."""
    check_source(source, key)
    path = Path(source).expanduser()
    return path if path.exists() else download_from_hub(source, key)


def load_pretrained(source: str) -> Pretrained:
    """Architecture, weights and tokenizer to start a run from."""
    path = resolve_source(source)
    if path.is_dir():
        config, state, tokenizer = read_gpt2_dir(path)
        return Pretrained(config, state, tokenizer, source)
    checkpoint = read_checkpoint(path, key=KEY)
    meta = checkpoint[METADATA_KEY]
    if meta["arch"] != "gpt":
        raise MinigptError(f"{KEY}: {path} holds a {meta['arch']} model; fine-tuning starts from GPT checkpoints")
    state = {
        name[len(MODEL_PREFIX) :]: tensor
        for name, tensor in checkpoint["state_dict"].items()
        if name.startswith(MODEL_PREFIX)
    }
    tokenizer = tokenizer_from_json(meta["tokenizer"], source=f"tokenizer in {path}")
    return Pretrained(GPTConfig.from_dict(meta["model_config"]), state, tokenizer, source)


def load_pretrained_tokenizer(source: str, key: str = KEY) -> Tokenizer:
    """Only the tokenizer of a source: what the data module needs to encode its text."""
    path = resolve_source(source, key)
    if path.is_dir():
        tokenizer_path = path / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise MinigptError(
                f"{key}: {path} lacks tokenizer.json; a GPT-2 directory needs {', '.join(REQUIRED_FILES)}"
            )
        return PretrainedTokenizer.from_file(tokenizer_path)
    meta = read_checkpoint(path, key=key)[METADATA_KEY]
    return tokenizer_from_json(meta["tokenizer"], source=f"tokenizer in {path}")


def extends(tokenizer: Tokenizer, base: Tokenizer) -> bool:
    """Whether `tokenizer` gives every token of `base` the same id (it may add tokens after them)."""
    if isinstance(tokenizer, CharTokenizer) and isinstance(base, CharTokenizer):
        return tokenizer.chars[: len(base.chars)] == base.chars
    return tokenizer.to_json() == base.to_json()


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
