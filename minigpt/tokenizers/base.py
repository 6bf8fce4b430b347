"""What every tokenizer offers, and the registry that knows every kind.

A kind is one subclass of `Tokenizer` with a `kind` name; defining it registers it, so a new
kind is one new module (imported by `minigpt.tokenizers`) and nothing else lists it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from minigpt.errors import MinigptError

END_OF_TEXT = "<|endoftext|>"
PADDING = "<|pad|>"
SPECIAL_TOKENS = (END_OF_TEXT, PADDING)

TOKENIZER_KINDS: dict[str, type[Tokenizer]] = {}


class TrainingOptions(Protocol):
    """The settings a trainable kind reads (the `tokenizer:` block, minigpt.tokenizers.TokenizerSpec)."""

    vocab_size: int | None
    pattern: str
    special_tokens: bool
    min_frequency: int


class Tokenizer(ABC):
    """Text to ids and back, serialisable to JSON so that a checkpoint carries its own."""

    kind: ClassVar[str]
    # Kinds learned from text (`train`), rather than loaded from a file.
    trainable: ClassVar[bool] = False
    # A vocabulary that is an alphabet (characters) must cover every split, not only the
    # training text, or validation would meet unknown symbols.
    learns_from_every_split: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            TOKENIZER_KINDS[cls.kind] = cls

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    def eot_id(self) -> int | None:
        """Id of the end-of-text token, which ends a document or a response; None when there is none."""
        return None

    @property
    def pad_id(self) -> int | None:
        """Id that pads batches of unequal length; None when there is none."""
        return None

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def encode_prompt(self, text: str) -> list[int]:
        """A prompt's ids: `encode`'s, plus the tokens the tokenizer puts around a text of its own
        accord (a published tokenizer's beginning-of-text token), as other tools encode a prompt."""
        return self.encode(text)

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @abstractmethod
    def token_char_lengths(self) -> np.ndarray:
        """Characters each token id stands for; turns nats per token into bits per character.

        Summed over the ids of any text, it gives that text's length in characters, so bits per
        character rank tokenizers of every kind on one scale.
        """

    @abstractmethod
    def to_json(self) -> str:
        """minigpt's form: a JSON object with a `kind` field, read back by `tokenizer_from_json`."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer: ...

    @abstractmethod
    def to_huggingface(self) -> str:
        """The same tokenizer as a Hugging Face `tokenizer.json`: same ids for every text."""

    @classmethod
    def train(cls, texts: Iterable[str], options: TrainingOptions) -> Tokenizer:
        """Learn this kind from chunks of text (trainable kinds only)."""
        raise MinigptError(f"tokenizer kind {cls.kind} is loaded from a file, not trained; set tokenizer.path")

    @classmethod
    def check_options(cls, options: TrainingOptions) -> None:
        """Refuse, with one line naming the key, settings this kind cannot train with."""
        return None  # the kinds that need settings check them

    def extended(self, texts: Iterable[str]) -> Tokenizer:
        """A tokenizer that also covers `texts` (chunks of one text), giving every existing token the same id.

        Byte-level kinds already cover any text and return themselves; a character vocabulary
        appends the characters it lacks.
        """
        return self

    def extends(self, base: Tokenizer) -> bool:
        """Whether this tokenizer gives every token of `base` the same id (it may add tokens after them)."""
        return self.to_json() == base.to_json()


def minigpt_settings_path(tokenizer_json: Path) -> Path:
    """Where minigpt's own form of a tokenizer saved as `tok.json` lives: `tok.minigpt.json`.

    A Hugging Face tokenizer.json holds the ids, not minigpt's kind (a character vocabulary that
    grows for a fine-tune, refuses unknown characters): that sits beside it.
    """
    return tokenizer_json.with_name(f"{tokenizer_json.stem}.minigpt.json")


def trainable_kinds() -> list[str]:
    return [kind for kind, cls in TOKENIZER_KINDS.items() if cls.trainable]


def parse_tokenizer_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
        data["kind"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise MinigptError(f"{source} is not a minigpt tokenizer (expected JSON with a 'kind' field)") from None
    return data


def tokenizer_from_json(text: str, source: str = "tokenizer JSON") -> Tokenizer:
    data = parse_tokenizer_json(text, source)
    kind = data["kind"]
    if kind not in TOKENIZER_KINDS:
        raise MinigptError(f"{source} has unknown tokenizer kind {kind!r}; known: {', '.join(TOKENIZER_KINDS)}")
    try:
        return TOKENIZER_KINDS[kind].from_dict(data)
    except MinigptError:
        raise
    except Exception as error:  # the HF backend raises plain Exceptions on a damaged JSON
        raise MinigptError(f"{source} is a damaged {kind} tokenizer ({type(error).__name__}: {error})") from None
