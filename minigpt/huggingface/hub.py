"""Sources of weights and tokenizers: a local file or directory, or a Hugging Face hub name,
downloaded into the Hugging Face cache."""

from __future__ import annotations

import re
from pathlib import Path

from minigpt.errors import MinigptError, first_line

HUB_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
# Suffixes of files, never of hub names: such a source that does not exist is a missing file.
FILE_SUFFIXES = (".ckpt", ".json", ".safetensors")


# Fetched beside a model's required files when the repository has them: its chat template,
# generation defaults and tokenizer settings, which serving and exports read.
COMPANION_FILES = ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja")


def download_from_hub(name: str, key: str, files: tuple[str, ...]) -> Path:
    """The local snapshot of hub repository `name` with `files` (and their companions), from the
    Hugging Face cache when it holds them (HF_HUB_OFFLINE=1 looks nowhere else)."""
    from huggingface_hub import snapshot_download  # slow to import; only needed for hub names

    wanted = [*files, *(COMPANION_FILES if "config.json" in files else ())]
    try:
        return Path(snapshot_download(name, allow_patterns=wanted))
    except Exception as error:  # offline, unknown repo, no access: all end the same way for a user
        raise MinigptError(
            f"{key}: could not download {name!r} from the Hugging Face hub ({first_line(error)}); download it where "
            f"there is internet (hf download {name} {' '.join(wanted)} --local-dir DIR), copy DIR here and pass "
            f"{key}=DIR"
        ) from None


def source_exists(source: str | Path) -> bool:
    """Whether `source` is an existing path, or could be a hub name (which only a download tells)."""
    path = Path(source).expanduser()
    return path.exists() or (bool(HUB_NAME.match(str(source))) and path.suffix not in FILE_SUFFIXES)


def check_source(source: str | Path, key: str) -> None:
    """Refuse, naming `key`, a source that is neither an existing path nor a hub name."""
    if not source_exists(source):
        raise MinigptError(
            f"{key}: {source} does not exist; pass a minigpt .ckpt file, a Hugging Face model directory "
            "(or a tokenizer.json where a tokenizer is wanted), or a hub name like gpt2"
        )


def resolve_source(source: str | Path, key: str, files: tuple[str, ...]) -> Path:
    """A local file or directory for `source`, downloading `files` of a hub name."""
    check_source(source, key)
    path = Path(source).expanduser()
    return path if path.exists() else download_from_hub(str(source), key, files)
