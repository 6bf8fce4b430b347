"""TokenizerSpec: the `tokenizer:` block of a data module's config, and how it becomes a tokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from minigpt.errors import MinigptError
from minigpt.tokenizers.base import Tokenizer
from minigpt.tokenizers.char import CharTokenizer
from minigpt.tokenizers.huggingface import SPLIT_PATTERNS, BPETokenizer

TRAINED_KINDS = ("char", "bpe", "regex-bpe")
KINDS = (*TRAINED_KINDS, "pretrained")


@dataclass
class TokenizerSpec:
    """Which tokenizer a data module uses. Trained kinds learn from the training split only.

    Args:
        kind: char (one id per character), bpe (byte-level BPE, merges may span words), regex-bpe
            (byte-level BPE over pieces cut by `pattern`), or pretrained (load `path`).
        vocab_size: Ids to learn for bpe/regex-bpe (at least 258: 256 bytes + 2 special tokens).
            For char, an upper bound: a corpus with more distinct characters is refused.
        pattern: regex-bpe's pre-tokenizer regex: gpt2 or gpt4.
        path: pretrained: a tokenizer.json (Hugging Face), a file from `minigpt tokenizer train`, a
            minigpt checkpoint (its tokenizer), or a Hugging Face hub name such as gpt2.
        special_tokens: char only: add end-of-text and padding ids after the characters (the BPE
            kinds always have them, as ids 0 and 1).
        min_frequency: bpe/regex-bpe: a pair seen fewer times than this is never merged.
        max_training_chars: Learn from at most this many characters from the start of the training
            split (all when unset); bounds tokenizer training time on big corpora.
    """

    kind: Literal["char", "bpe", "regex-bpe", "pretrained"] = "char"
    vocab_size: int | None = None
    pattern: Literal["gpt2", "gpt4"] = "gpt4"
    path: str | None = None
    special_tokens: bool = False
    min_frequency: int = 2
    max_training_chars: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MinigptError(f"unknown tokenizer.kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind in ("bpe", "regex-bpe"):
            if self.vocab_size is None:
                raise MinigptError(f"tokenizer.vocab_size is required for kind {self.kind}, e.g. 4096")
            if self.vocab_size < BPETokenizer.minimum_vocab_size():
                raise MinigptError(
                    f"tokenizer.vocab_size {self.vocab_size} is smaller than the byte alphabet (256 bytes + "
                    f"2 special tokens); choose {BPETokenizer.minimum_vocab_size()} or more"
                )
        if self.pattern not in SPLIT_PATTERNS:
            raise MinigptError(f"unknown tokenizer.pattern {self.pattern!r}; choose one of {', '.join(SPLIT_PATTERNS)}")
        if self.kind == "pretrained" and not self.path:
            raise MinigptError("tokenizer.path is required for kind pretrained: a tokenizer.json file or a hub name")
        if self.kind != "pretrained" and self.path:
            raise MinigptError(f"tokenizer.path is only read for kind pretrained, not {self.kind}; drop one of them")
        if self.max_training_chars is not None and self.max_training_chars <= 0:
            raise MinigptError(f"tokenizer.max_training_chars must be positive, got {self.max_training_chars}")

    @property
    def is_trained(self) -> bool:
        return self.kind in TRAINED_KINDS

    def fingerprint(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def train(self, training_text: Iterable[str], alphabet_text: Iterable[str] | None = None) -> Tokenizer:
        """Learn the tokenizer from chunks of the training text.

        A character vocabulary is an alphabet, not statistics: it comes from `alphabet_text` (all
        splits) when given, so validation text never meets an unknown character.
        """
        if self.kind == "char":
            tokenizer = CharTokenizer.train(alphabet_text or training_text, self.special_tokens)
            if self.vocab_size is not None and len(tokenizer.chars) > self.vocab_size:
                raise MinigptError(
                    f"tokenizer.vocab_size {self.vocab_size} is smaller than the corpus's alphabet of "
                    f"{len(tokenizer.chars)} characters; raise it or leave it unset"
                )
            return tokenizer
        if self.kind in ("bpe", "regex-bpe"):
            assert self.vocab_size is not None
            texts = _first_chars(training_text, self.max_training_chars)
            return BPETokenizer.train(texts, self.vocab_size, self.kind, self.pattern, self.min_frequency)
        raise MinigptError(
            f"tokenizer kind {self.kind} is loaded, not trained: minigpt.pretrained.load_tokenizer reads it"
        )


def _first_chars(chunks: Iterable[str], limit: int | None) -> Iterator[str]:
    if limit is None:
        yield from chunks
        return
    for chunk in chunks:
        if limit <= 0:
            return
        yield chunk[:limit]
        limit -= len(chunk)
