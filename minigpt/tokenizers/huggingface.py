"""Tokenizers backed by Hugging Face `tokenizers`, and the `pretrained` kind: any published
tokenizer.json (GPT-2's, Llama's, ...) used as it is."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, ClassVar

import numpy as np
from tokenizers import Tokenizer as Backend

from minigpt.errors import MinigptError, first_line
from minigpt.tokenizers.base import END_OF_TEXT, PADDING, Tokenizer

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

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # The fast variant skips the character offsets, which minigpt never reads: the same ids,
        # sooner (benchmarks/README.md, "Tokenizing a corpus against the library").
        try:
            encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=False)
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
        data = self.backend_dict()
        processor = self.backend.post_processor
        if processor is not None and processor.num_special_tokens_to_add(False):
            # minigpt encodes without the tokens a post-processor puts around a text (Llama's
            # <s>, BERT's [CLS]): a file that kept them would give other tools other ids.
            data["post_processor"] = None
        return json.dumps(data, ensure_ascii=False)


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
    def from_dict(cls, data: dict[str, Any]) -> PretrainedTokenizer:
        return cls(Backend.from_str(json.dumps(data["backend"])), data.get("source", "?"))
