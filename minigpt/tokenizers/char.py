"""The character tokenizer: one id per character, as nanoGPT's shakespeare_char."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
from tokenizers import Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as Backend

from minigpt.errors import MinigptError
from minigpt.tokenizers.base import SPECIAL_TOKENS, Tokenizer, TrainingOptions

# ASCII's own "end of text" control character: a character vocabulary without special tokens
# that holds it (the instruction data module adds it) ends responses with it.
END_OF_TEXT_CHAR = "\x03"
# The exported vocabulary's unknown token, which has no id: other tools then refuse a character
# outside the vocabulary ("WordLevel error: Missing [UNK] token from the vocabulary"), as minigpt
# does, instead of encoding it as some other character. Pieces are single characters, so no text
# can spell it.
UNKNOWN_WITHOUT_ID = "[UNK]"
SPECIAL_TOKEN_PATTERN = re.compile("(" + "|".join(re.escape(token) for token in SPECIAL_TOKENS) + ")")


def alphabet(text: str | Iterable[str]) -> set[str]:
    """The characters of `text` (a string, or chunks of one)."""
    characters: set[str] = set()
    for chunk in [text] if isinstance(text, str) else text:
        characters.update(chunk)
    return characters


class CharTokenizer(Tokenizer):
    """Ids in sorted character order; with `special_tokens`, end-of-text and padding come last.

    Special tokens are off by default so Tiny Shakespeare keeps nanoGPT's 65-id vocabulary. They
    are ids only: text that spells `<|endoftext|>` is still encoded character by character.
    """

    kind: ClassVar[str] = "char"
    trainable: ClassVar[bool] = True
    learns_from_every_split: ClassVar[bool] = True

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
    def from_text(cls, text: str | Iterable[str], special_tokens: bool = False) -> CharTokenizer:
        """The alphabet of `text` (a string, or chunks of one)."""
        return cls(sorted(alphabet(text)), special_tokens)

    @classmethod
    def train(cls, texts: Iterable[str], options: TrainingOptions) -> CharTokenizer:
        tokenizer = cls.from_text(texts, options.special_tokens)
        if options.vocab_size is not None and len(tokenizer.chars) > options.vocab_size:
            raise MinigptError(
                f"tokenizer.vocab_size {options.vocab_size} is smaller than the corpus's alphabet of "
                f"{len(tokenizer.chars)} characters; raise it or leave it unset"
            )
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    @property
    def eot_id(self) -> int | None:
        if self.special_tokens:
            return len(self.chars)
        return self._ids.get(END_OF_TEXT_CHAR)

    @property
    def pad_id(self) -> int | None:
        return len(self.chars) + 1 if self.special_tokens else None

    def unknown_characters(self, text: str | Iterable[str]) -> list[str]:
        return sorted(alphabet(text) - self._ids.keys())

    def extended(self, texts: Iterable[str]) -> CharTokenizer:
        """This vocabulary plus the characters of `texts` it lacks, appended in sorted order."""
        added = self.unknown_characters(texts)
        if not added:
            return self
        if self.special_tokens:
            # The special ids follow the characters: growing the alphabet would move them.
            raise MinigptError(
                f"the text has characters the checkpoint's vocabulary lacks ({''.join(added)!r}) and its "
                "character tokenizer has special tokens, whose ids new characters would move; remove them"
            )
        return CharTokenizer(self.chars + added)

    def extends(self, base: Tokenizer) -> bool:
        return (
            isinstance(base, CharTokenizer)
            and self.special_tokens == base.special_tokens
            and self.chars[: len(base.chars)] == base.chars
        )

    def encode(self, text: str) -> list[int]:
        if self.special_tokens and any(token in text for token in SPECIAL_TOKENS):
            # Text that spells a special token is that token, as in every Hugging Face tokenizer
            # (and minigpt's byte-level kinds): a chat template's end-of-text is the id it was
            # trained with, and transformers reads the exported vocabulary the same way.
            specials = {token: len(self.chars) + index for index, token in enumerate(SPECIAL_TOKENS)}
            ids: list[int] = []
            for piece in SPECIAL_TOKEN_PATTERN.split(text):
                ids.extend([specials[piece]] if piece in specials else self._encode_characters(piece))
            return ids
        return self._encode_characters(text)

    def _encode_characters(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            unknown = "".join(self.unknown_characters(text))
            raise MinigptError(
                f"text has characters outside the tokenizer's vocabulary: {unknown!r}; "
                "remove them or train on a corpus that contains them"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._pieces[i] for i in ids)

    def token_char_lengths(self) -> np.ndarray:
        lengths = np.ones(self.vocab_size, dtype=np.int64)
        lengths[len(self.chars) :] = 0  # special tokens are not text
        return lengths

    def to_json(self) -> str:
        data: dict[str, Any] = {"kind": self.kind, "chars": self.chars}
        if self.special_tokens:
            data["special_tokens"] = True
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        return cls(data["chars"], bool(data.get("special_tokens", False)))

    def to_huggingface(self) -> str:
        """A word-level vocabulary of single characters, each character its own piece; its special
        tokens are added tokens, which Hugging Face tokenizers match in text, as `encode` does."""
        vocab = {char: index for index, char in enumerate(self.chars)}
        backend = Backend(models.WordLevel(vocab, unk_token=UNKNOWN_WITHOUT_ID))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        backend.decoder = decoders.Fuse()
        if self.special_tokens:
            backend.add_special_tokens(list(SPECIAL_TOKENS))
        return backend.to_str()
