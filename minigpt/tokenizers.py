"""Tokenizers: text to ids and back, serialisable to JSON so a checkpoint carries its own.

Every tokenizer kind registers itself in `TOKENIZER_KINDS`; `tokenizer_from_json` reads any of
them back from the `kind` field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
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

    def extended(self, text: str) -> CharTokenizer:
        """This vocabulary plus the characters of `text` it lacks, appended in sorted order.

        Existing ids keep their meaning, so a checkpoint's embedding rows stay valid and only the
        new characters need new rows (see `minigpt.pretrained.fit_vocabulary`).
        """
        added = self.unknown_characters(text)
        return CharTokenizer(self.chars + added) if added else self

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


class PretrainedTokenizer:
    """A Hugging Face `tokenizers` tokenizer (a `tokenizer.json`, such as GPT-2's byte-level BPE).

    It arrives with pretrained weights (`model.init_from`) and is used as it is: never retrained.
    """

    kind: ClassVar[str] = "pretrained"

    def __init__(self, tokenizer_json: str, source: str = "tokenizer.json") -> None:
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._tokenizer = HFTokenizer.from_str(tokenizer_json)
        except Exception as error:  # the Rust side raises plain Exceptions with a parse message
            raise MinigptError(f"{source} is not a Hugging Face tokenizer.json ({error})") from None
        self.tokenizer_json = tokenizer_json

    @classmethod
    def from_file(cls, path: str | Path) -> PretrainedTokenizer:
        return cls(Path(path).read_text(encoding="utf-8"), source=str(path))

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_char_lengths(self) -> np.ndarray:
        # A byte-level token may be part of one character; its lone decode is then U+FFFD (1).
        pieces = self._tokenizer.decode_batch([[i] for i in range(self.vocab_size)], skip_special_tokens=False)
        return np.array([len(piece) for piece in pieces], dtype=np.int64)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": self.tokenizer_json}, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> PretrainedTokenizer:
        return cls(data["tokenizer"])


TOKENIZER_KINDS: dict[str, type] = {CharTokenizer.kind: CharTokenizer, PretrainedTokenizer.kind: PretrainedTokenizer}


def tokenizer_from_json(text: str, source: str = "tokenizer JSON") -> Tokenizer:
    try:
        data = json.loads(text)
        kind = data["kind"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise MinigptError(f"{source} is not a minigpt tokenizer (expected JSON with a 'kind' field)") from None
    if kind not in TOKENIZER_KINDS:
        raise MinigptError(f"{source} has unknown tokenizer kind {kind!r}; known: {', '.join(TOKENIZER_KINDS)}")
    return TOKENIZER_KINDS[kind].from_dict(data)
