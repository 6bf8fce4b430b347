"""Tokenizers: text to ids and back, serialisable to JSON so a checkpoint carries its own.

Every tokenizer kind registers itself in `TOKENIZER_KINDS`; `tokenizer_from_json` reads any of
them back from the `kind` field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol

import numpy as np

from minigpt.errors import MinigptError


class Tokenizer(Protocol):
    kind: ClassVar[str]

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def token_char_lengths(self) -> np.ndarray:
        """Characters each token id stands for; turns nats per token into bits per character."""
        ...

    def to_json(self) -> str: ...


class CharTokenizer:
    """One id per character, ids in sorted character order (as nanoGPT's shakespeare_char)."""

    kind: ClassVar[str] = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        if not chars:
            raise MinigptError("a character tokenizer needs at least one character; the text is empty")
        self.chars = list(chars)
        self._ids = {c: i for i, c in enumerate(self.chars)}
        if len(self._ids) != len(self.chars):
            raise MinigptError("a character tokenizer's vocabulary lists a character twice")

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_characters(self, text: str) -> list[str]:
        return sorted(set(text) - self._ids.keys())

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            unknown = "".join(self.unknown_characters(text))
            raise MinigptError(
                f"text has characters outside the tokenizer's vocabulary: {unknown!r}; "
                "remove them or train on a corpus that contains them"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def token_char_lengths(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "chars": self.chars}, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        return cls(data["chars"])


TOKENIZER_KINDS: dict[str, type] = {CharTokenizer.kind: CharTokenizer}


def tokenizer_from_json(text: str, source: str = "tokenizer JSON") -> Tokenizer:
    try:
        data = json.loads(text)
        kind = data["kind"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise MinigptError(f"{source} is not a minigpt tokenizer (expected JSON with a 'kind' field)") from None
    if kind not in TOKENIZER_KINDS:
        raise MinigptError(f"{source} has unknown tokenizer kind {kind!r}; known: {', '.join(TOKENIZER_KINDS)}")
    return TOKENIZER_KINDS[kind].from_dict(data)
