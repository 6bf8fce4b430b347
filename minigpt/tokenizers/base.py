"""What every tokenizer offers, and the registry that reads any of them back from JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from minigpt.errors import MinigptError

END_OF_TEXT = "<|endoftext|>"
PADDING = "<|pad|>"
SPECIAL_TOKENS = (END_OF_TEXT, PADDING)


class Tokenizer(Protocol):
    kind: ClassVar[str]

    @property
    def vocab_size(self) -> int: ...

    @property
    def eot_id(self) -> int | None:
        """Id of the end-of-text token, which separates documents; None when there is none."""
        ...

    @property
    def pad_id(self) -> int | None:
        """Id that pads batches of unequal length; None when there is none."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def token_char_lengths(self) -> np.ndarray:
        """Characters each token id stands for; turns nats per token into bits per character.

        Summed over the ids of any text, it gives that text's length in characters, so bits per
        character rank tokenizers of every kind on one scale.
        """
        ...

    def to_json(self) -> str: ...


TOKENIZER_KINDS: dict[str, Any] = {}


def register(cls: type) -> type:
    for kind in getattr(cls, "kinds", None) or (cls.kind,):
        TOKENIZER_KINDS[kind] = cls
    return cls


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
