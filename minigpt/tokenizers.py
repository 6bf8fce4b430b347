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


# ASCII's own "end of text" control character: a character tokenizer that holds it (the
# instruction data module adds it) uses it to mark where a response ends.
END_OF_TEXT_CHAR = "\x03"


def end_of_text_id(tokenizer: Tokenizer) -> int | None:
    """The id that ends a document: the tokenizer's `eot_id` when it has one, else the id of
    END_OF_TEXT_CHAR in a character vocabulary, else None (generation then stops only on
    max_new_tokens or a stop sequence)."""
    eot = getattr(tokenizer, "eot_id", None)
    if eot is not None:
        return eot
    if isinstance(tokenizer, CharTokenizer) and not tokenizer.unknown_characters(END_OF_TEXT_CHAR):
        return tokenizer.encode(END_OF_TEXT_CHAR)[0]
    return None
