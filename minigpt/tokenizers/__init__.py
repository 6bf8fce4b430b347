"""Tokenizers: text to ids and back, serialisable to JSON so a checkpoint carries its own.

Each kind is one module with one `Tokenizer` subclass, registered by defining it:
`char`, `bpe` and `regex-bpe` (trained on the training split) and `pretrained` (any
tokenizer.json). `tokenizer_from_json` reads any of them back from its `kind` field.
"""

from minigpt.tokenizers.base import (
    END_OF_TEXT,
    PADDING,
    TOKENIZER_KINDS,
    Tokenizer,
    minigpt_settings_path,
    tokenizer_from_json,
    trainable_kinds,
)
from minigpt.tokenizers.bpe import SPLIT_PATTERNS, BPETokenizer, RegexBPETokenizer
from minigpt.tokenizers.char import END_OF_TEXT_CHAR, CharTokenizer
from minigpt.tokenizers.huggingface import PretrainedTokenizer, read_tokenizer_json
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
    "RegexBPETokenizer",
    "Tokenizer",
    "TokenizerSpec",
    "minigpt_settings_path",
    "read_tokenizer_json",
    "tokenizer_from_json",
    "trainable_kinds",
]
