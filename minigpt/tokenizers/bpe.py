"""Byte-level BPE trained on your corpus: `bpe` and `regex-bpe`.

They differ only in how text is cut into pieces before merges are learned: `bpe` cuts only at
line ends, so merges may span spaces and words; `regex-bpe` cuts with GPT-2's or GPT-4's regex
first, so a token never spans a word and its neighbouring punctuation. Both work on UTF-8 bytes,
so any text round-trips exactly and no character is ever unknown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as Backend

from minigpt.errors import MinigptError
from minigpt.tokenizers.base import SPECIAL_TOKENS, TrainingOptions
from minigpt.tokenizers.huggingface import BYTE_ALPHABET_SIZE, HuggingFaceTokenizer

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
MINIMUM_VOCAB_SIZE = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)


class BPETokenizer(HuggingFaceTokenizer):
    """Byte-level BPE with end-of-text (id 0) and padding (id 1); merges may span words."""

    kind: ClassVar[str] = "bpe"
    trainable: ClassVar[bool] = True

    def __init__(self, backend: Backend, pattern: str | None = None) -> None:
        super().__init__(backend)
        self.pattern = pattern

    @classmethod
    def split_rule(cls, pattern: str) -> pre_tokenizers.PreTokenizer:
        """How text is cut before merges are learned: at line ends only."""
        return pre_tokenizers.Split("\n", behavior="merged_with_previous")

    @classmethod
    def check_options(cls, options: TrainingOptions) -> None:
        if options.vocab_size is None:
            raise MinigptError(f"tokenizer.vocab_size is required for kind {cls.kind}, e.g. 4096")
        if options.vocab_size < MINIMUM_VOCAB_SIZE:
            raise MinigptError(
                f"tokenizer.vocab_size {options.vocab_size} is smaller than the byte alphabet ({BYTE_ALPHABET_SIZE} "
                f"bytes + {len(SPECIAL_TOKENS)} special tokens); choose {MINIMUM_VOCAB_SIZE} or more"
            )
        if options.pattern not in SPLIT_PATTERNS:
            raise MinigptError(
                f"unknown tokenizer.pattern {options.pattern!r}; choose one of {', '.join(SPLIT_PATTERNS)}"
            )

    @classmethod
    def train(cls, texts: Iterable[str], options: TrainingOptions, show_progress: bool = False) -> BPETokenizer:
        """Learn merges from `texts` (chunks of the training text) until `vocab_size` ids exist."""
        cls.check_options(options)
        assert options.vocab_size is not None
        backend = Backend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [cls.split_rule(options.pattern), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=options.vocab_size,
            min_frequency=options.min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        backend.train_from_iterator(_nonempty(texts), trainer)
        return cls(backend, options.pattern if cls.kind == "regex-bpe" else None)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "pattern": self.pattern, "backend": self.backend_dict()})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        return cls(Backend.from_str(json.dumps(data["backend"])), data.get("pattern"))


class RegexBPETokenizer(BPETokenizer):
    """Byte-level BPE over pieces cut by GPT-2's or GPT-4's regex (`pattern`), as GPT-2 and GPT-4 do."""

    kind: ClassVar[str] = "regex-bpe"

    @classmethod
    def split_rule(cls, pattern: str) -> pre_tokenizers.PreTokenizer:
        return pre_tokenizers.Split(Regex(SPLIT_PATTERNS[pattern]), behavior="isolated")


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    return (text for text in texts if text)
