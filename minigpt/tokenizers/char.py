"""The character tokenizer: one id per character, as nanoGPT's shakespeare_char."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np

from minigpt.errors import MinigptError
from minigpt.tokenizers.base import SPECIAL_TOKENS, Tokenizer, register


@register
class CharTokenizer:
    """Ids in sorted character order; with `special_tokens`, end-of-text and padding come last.

    Special tokens are off by default so Tiny Shakespeare keeps nanoGPT's 65-id vocabulary. They
    are ids only: text that spells `<|endoftext|>` is still encoded character by character.
    """

    kind: ClassVar[str] = "char"

    def __init__(self, chars: Sequence[str], special_tokens: bool = False) -> None:
        if not chars:
            raise MinigptError("a character tokenizer needs at least one character; the text is empty")
        self.chars = list(chars)
        self.special_tokens = special_tokens
        self._ids = {c: i for i, c in enumerate(self.chars)}
        if len(self._ids) != len(self.chars):
            raise MinigptError("a character tokenizer's vocabulary lists a character twice")
        self._pieces = self.chars + (list(SPECIAL_TOKENS) if special_tokens else [])

    @classmethod
    def train(cls, text: str | Iterable[str], special_tokens: bool = False) -> CharTokenizer:
        """The alphabet of `text` (a string, or chunks of one)."""
        alphabet: set[str] = set()
        for chunk in [text] if isinstance(text, str) else text:
            alphabet.update(chunk)
        return cls(sorted(alphabet), special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    @property
    def eot_id(self) -> int | None:
        return len(self.chars) if self.special_tokens else None

    @property
    def pad_id(self) -> int | None:
        return len(self.chars) + 1 if self.special_tokens else None

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

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._pieces[i] for i in ids)

    def token_char_lengths(self) -> np.ndarray:
        lengths = np.ones(self.vocab_size, dtype=np.int64)
        lengths[len(self.chars) :] = 0  # special tokens are not text
        return lengths

    def to_json(self) -> str:
        data: dict = {"kind": self.kind, "chars": self.chars}
        if self.special_tokens:
            data["special_tokens"] = True
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        return cls(data["chars"], bool(data.get("special_tokens", False)))


# ASCII's own "end of text" control character: a character tokenizer without special tokens
# that holds it (the instruction data module adds it) uses it to mark where a response ends.
END_OF_TEXT_CHAR = "\x03"


def end_of_text_id(tokenizer: Tokenizer) -> int | None:
    """The id that ends a document: the tokenizer's `eot_id` when it has one, else the id of
    END_OF_TEXT_CHAR in a character vocabulary, else None (generation then stops only on
    max_new_tokens or a stop sequence)."""
    if tokenizer.eot_id is not None:
        return tokenizer.eot_id
    if isinstance(tokenizer, CharTokenizer) and not tokenizer.unknown_characters(END_OF_TEXT_CHAR):
        return tokenizer.encode(END_OF_TEXT_CHAR)[0]
    return None
