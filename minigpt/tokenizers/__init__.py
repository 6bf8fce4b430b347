"""Tokenizers: text to ids and back, serialisable to JSON so a checkpoint carries its own.

Kinds: `char`, `bpe`, `regex-bpe` (trained on the training split) and `pretrained` (any
tokenizer.json). Every kind registers itself in `TOKENIZER_KINDS`; `tokenizer_from_json` reads
any of them back from the `kind` field.
"""

from minigpt.tokenizers.base import (
    END_OF_TEXT,
    PADDING,
    TOKENIZER_KINDS,
    Tokenizer,
    tokenizer_from_json,
)
from minigpt.tokenizers.char import END_OF_TEXT_CHAR, CharTokenizer, end_of_text_id
from minigpt.tokenizers.huggingface import SPLIT_PATTERNS, BPETokenizer, PretrainedTokenizer
from minigpt.tokenizers.spec import TokenizerSpec

__all__ = [
    "END_OF_TEXT",
    "END_OF_TEXT_CHAR",
    "PADDING",
    "SPLIT_PATTERNS",
    "TOKENIZER_KINDS",
    "BPETokenizer",
    "CharTokenizer",
    "PretrainedTokenizer",
    "Tokenizer",
    "TokenizerSpec",
    "end_of_text_id",
    "tokenizer_from_json",
]
