"""Tokenizers backed by Hugging Face `tokenizers`: byte-level BPE trained here, or a pretrained one.

`bpe` and `regex-bpe` differ only in how text is cut into pieces before merges are learned:
`bpe` cuts only at line ends, so merges may span spaces and words; `regex-bpe` cuts with GPT-2's
or GPT-4's regex first, so a token never spans a word and its neighbouring punctuation. Both
work on UTF-8 bytes, so any text round-trips exactly and no character is ever unknown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any, ClassVar

import numpy as np
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as Backend

from minigpt.errors import MinigptError, first_line
from minigpt.tokenizers.base import END_OF_TEXT, PADDING, SPECIAL_TOKENS, register

# The pre-tokenizer patterns of GPT-2 (Radford et al., 2019) and of GPT-4's cl100k_base. GPT-4's
# keeps digits in groups of at most three, takes contractions in any case, and keeps a
# punctuation run together with the line ends that follow it.
SPLIT_PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "gpt4": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
        r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
    ),
}
BYTE_ALPHABET_SIZE = 256
# Common names of end-of-text and padding tokens in published tokenizer.json files.
EOT_NAMES = (END_OF_TEXT, "</s>", "<|end_of_text|>", "<eos>", "[SEP]")
PAD_NAMES = (PADDING, "<pad>", "[PAD]")


@cache
def byte_of_symbol() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte, reversed: symbol -> byte value.

    Bytes that are printable Latin-1 stand for themselves; the others (controls, space, ...) are
    moved, in byte order, to code points from 256 up. This is the alphabet GPT-2 introduced and
    `pre_tokenizers.ByteLevel` uses.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {byte: chr(byte) for byte in printable}
    moved = (byte for byte in range(BYTE_ALPHABET_SIZE) if byte not in symbols)
    symbols.update({byte: chr(BYTE_ALPHABET_SIZE + n) for n, byte in enumerate(moved)})
    return {symbol: byte for byte, symbol in symbols.items()}


def utf8_characters(symbols: str) -> int | None:
    """Characters a byte-level token contributes: its bytes that start a UTF-8 character.

    A token may hold half a character; counting lead bytes (not 10xxxxxx continuations) makes the
    counts of a text's tokens add up to its exact length. None when `symbols` is not byte-level.
    """
    table = byte_of_symbol()
    if not all(symbol in table for symbol in symbols):
        return None
    return sum(1 for symbol in symbols if table[symbol] & 0xC0 != 0x80)


class HuggingFaceTokenizer:
    """A `tokenizers.Tokenizer` behind minigpt's tokenizer interface."""

    kind: ClassVar[str]

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._special = {token.content for token in backend.get_added_tokens_decoder().values() if token.special}
        # Published vocabularies may leave gaps in their ids: size by the largest id.
        self._vocab_size = max(backend.get_vocab(with_added_tokens=True).values()) + 1

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def _first_token(self, names: Sequence[str]) -> int | None:
        for name in names:
            token_id = self.backend.token_to_id(name)
            if token_id is not None:
                return token_id
        return None

    @property
    def eot_id(self) -> int | None:
        return self._first_token(EOT_NAMES)

    @property
    def pad_id(self) -> int | None:
        # GPT-2 has no padding token; padding with end-of-text is the usual stand-in.
        pad = self._first_token(PAD_NAMES)
        return self.eot_id if pad is None else pad

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def token_char_lengths(self) -> np.ndarray:
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for token, token_id in self.backend.get_vocab(with_added_tokens=True).items():
            if token in self._special:
                continue  # end-of-text and padding are not text
            count = utf8_characters(token)
            # Not byte-level (e.g. a WordPiece vocabulary): fall back on the decoded text's length.
            lengths[token_id] = len(self.backend.decode([token_id])) if count is None else count
        return lengths

    def backend_dict(self) -> dict[str, Any]:
        return json.loads(self.backend.to_str())


@register
class BPETokenizer(HuggingFaceTokenizer):
    """Byte-level BPE with end-of-text (id 0) and padding (id 1), trained on your corpus."""

    kinds: ClassVar[tuple[str, ...]] = ("bpe", "regex-bpe")

    def __init__(self, backend: Backend, kind: str, pattern: str | None) -> None:
        super().__init__(backend)
        self.kind = kind  # type: ignore[misc]  # one class, two registered kinds
        self.pattern = pattern

    @staticmethod
    def minimum_vocab_size() -> int:
        return BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        kind: str = "bpe",
        pattern: str = "gpt4",
        min_frequency: int = 2,
        show_progress: bool = False,
    ) -> BPETokenizer:
        """Learn merges from `texts` (chunks of the training text) until `vocab_size` ids exist."""
        if kind not in cls.kinds:
            raise MinigptError(f"unknown BPE kind {kind!r}; choose one of {', '.join(cls.kinds)}")
        if vocab_size < cls.minimum_vocab_size():
            raise MinigptError(
                f"tokenizer.vocab_size {vocab_size} is smaller than the byte alphabet ({BYTE_ALPHABET_SIZE} bytes "
                f"+ {len(SPECIAL_TOKENS)} special tokens); choose {cls.minimum_vocab_size()} or more"
            )
        if kind == "regex-bpe" and pattern not in SPLIT_PATTERNS:
            raise MinigptError(f"unknown tokenizer.pattern {pattern!r}; choose one of {', '.join(SPLIT_PATTERNS)}")
        backend = Backend(models.BPE())
        split = (
            pre_tokenizers.Split(Regex(SPLIT_PATTERNS[pattern]), behavior="isolated")
            if kind == "regex-bpe"
            else pre_tokenizers.Split("\n", behavior="merged_with_previous")
        )
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        backend.train_from_iterator(_nonempty(texts), trainer)
        return cls(backend, kind, pattern if kind == "regex-bpe" else None)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "pattern": self.pattern, "backend": self.backend_dict()})

    @classmethod
    def from_dict(cls, data: dict) -> BPETokenizer:
        return cls(Backend.from_str(json.dumps(data["backend"])), data["kind"], data.get("pattern"))


@register
class PretrainedTokenizer(HuggingFaceTokenizer):
    """Any published `tokenizer.json` (GPT-2's, Llama's, ...), used as it is."""

    kind: ClassVar[str] = "pretrained"

    def __init__(self, backend: Backend, source: str) -> None:
        super().__init__(backend)
        self.source = source

    @classmethod
    def from_file(cls, path: str | os.PathLike, key: str = "tokenizer.path") -> PretrainedTokenizer:
        try:
            return cls(Backend.from_file(str(path)), source=str(path))
        except Exception as error:  # the backend reports any parse failure as a plain Exception
            raise MinigptError(
                f"{key}: {path} is not a tokenizer file ({first_line(error)}); give a tokenizer.json saved by "
                "Hugging Face tokenizers or a file written by `minigpt tokenizer train`"
            ) from None

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "source": self.source, "backend": self.backend_dict()})

    @classmethod
    def from_dict(cls, data: dict) -> PretrainedTokenizer:
        return cls(Backend.from_str(json.dumps(data["backend"])), data.get("source", "?"))


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    return (text for text in texts if text)
