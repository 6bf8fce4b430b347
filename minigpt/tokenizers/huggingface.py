"""Tokenizers backed by Hugging Face `tokenizers`, and the `pretrained` kind: any published
tokenizer.json (GPT-2's, Llama's, ...) used as it is."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tokenizers import Tokenizer as Backend

from minigpt.errors import MinigptError, first_line
from minigpt.tokenizers.base import END_OF_TEXT, PADDING, Tokenizer, minigpt_settings_path, tokenizer_from_json

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


class HuggingFaceTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer` behind minigpt's tokenizer interface (not a kind of its own)."""

    def __init__(self, backend: Backend) -> None:
        # A tokenizer.json may carry a length to cut or pad every text to: minigpt encodes whole
        # texts, one list of ids each, as other tools do unless asked to cut or pad.
        backend.no_truncation()
        backend.no_padding()
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
        return self.encode_batch([text])[0]

    def encode_prompt(self, text: str) -> list[int]:
        # With its post-processor's tokens (Llama's <s>), as `tokenizer(text)` gives in transformers.
        return self._encode([text], add_special_tokens=True)[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._encode(texts, add_special_tokens=False)

    def _encode(self, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
        # The fast variant skips the character offsets, which minigpt never reads: the same ids,
        # sooner (benchmarks/README.md, "Tokenizing a corpus against the library").
        try:
            encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)
        except Exception as error:  # a vocabulary without an unknown token refuses what it lacks
            unknown = self.unknown_pieces(texts)
            if not unknown:
                raise
            raise MinigptError(
                f"text has pieces outside the tokenizer's vocabulary: {unknown} ({first_line(error)}); remove them"
            ) from None
        return [encoding.ids for encoding in encodings]

    def unknown_pieces(self, texts: Sequence[str]) -> str:
        """The pieces of `texts` (as the normalizer and pre-tokenizer cut them) that have no id."""
        vocab = self.backend.get_vocab(with_added_tokens=True)
        normalizer, pre_tokenizer = self.backend.normalizer, self.backend.pre_tokenizer
        unknown: set[str] = set()
        for text in texts:
            text = normalizer.normalize_str(text) if normalizer else text
            pieces = [piece for piece, _ in pre_tokenizer.pre_tokenize_str(text)] if pre_tokenizer else [text]
            unknown.update(piece for piece in pieces if piece not in vocab)
        return ", ".join(repr(piece) for piece in sorted(unknown))

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

    def to_huggingface(self) -> str:
        # The post-processor stays: transformers then encodes a prompt as `encode_prompt` does,
        # and text without special tokens (add_special_tokens=False) as `encode` does.
        return self.backend.to_str()


class PretrainedTokenizer(HuggingFaceTokenizer):
    """Any published `tokenizer.json` (GPT-2's, Llama's, ...), used as it is."""

    kind: ClassVar[str] = "pretrained"

    def __init__(self, backend: Backend, source: str, end_of_text: str | None = None) -> None:
        super().__init__(backend)
        self.source = source
        # The model's own end-of-text token when its config names one (a model directory's
        # eos_token_id), over the usual names.
        self.end_of_text = end_of_text if end_of_text is not None and backend.token_to_id(end_of_text) else None

    @property
    def eot_id(self) -> int | None:
        if self.end_of_text is not None:
            return self.backend.token_to_id(self.end_of_text)
        return super().eot_id

    def with_end_of_text(self, token_id: int) -> PretrainedTokenizer:
        """This tokenizer with `token_id` as its end-of-text token."""
        token = self.backend.id_to_token(token_id)
        if token is None:
            return self
        return PretrainedTokenizer(Backend.from_str(self.backend.to_str()), self.source, token)

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
        data = {"kind": self.kind, "source": self.source, "backend": self.backend_dict()}
        if self.end_of_text is not None:
            data["end_of_text"] = self.end_of_text
        return json.dumps(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainedTokenizer:
        return cls(Backend.from_str(json.dumps(data["backend"])), data.get("source", "?"), data.get("end_of_text"))


def read_tokenizer_json(path: Path, key: str) -> Tokenizer:
    """A Hugging Face tokenizer.json, as minigpt's own kind when minigpt wrote it (its settings
    lie beside it: `minigpt tokenizer train`, `minigpt export`), else as the `pretrained` kind."""
    settings = minigpt_settings_path(path)
    if settings.is_file():
        own = tokenizer_from_json(settings.read_text(encoding="utf-8"), source=str(settings))
        try:
            same = json.loads(own.to_huggingface()) == json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            same = False
        if same:
            return own
    return PretrainedTokenizer.from_file(path, key)
