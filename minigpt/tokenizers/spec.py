"""TokenizerSpec: the `tokenizer:` block of a data module's config."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from minigpt.errors import MinigptError
from minigpt.tokenizers.base import TOKENIZER_KINDS, Tokenizer


@dataclass
class TokenizerSpec:
    """Which tokenizer a data module uses. Trained kinds learn from the training split only.

    Args:
        kind: A registered tokenizer kind: char (one id per character), bpe (byte-level BPE,
            merges may span words), regex-bpe (byte-level BPE over pieces cut by `pattern`), or
            pretrained (load `path`).
        vocab_size: Ids to learn for bpe/regex-bpe (at least 258: 256 bytes + 2 special tokens).
            For char, an upper bound: a corpus with more distinct characters is refused.
        pattern: regex-bpe's pre-tokenizer regex: gpt2 or gpt4.
        path: pretrained: a tokenizer.json (Hugging Face), a file from `minigpt tokenizer train`, a
            minigpt checkpoint (its tokenizer), a Hugging Face directory, or a hub name such as gpt2.
        special_tokens: char only: add end-of-text and padding ids after the characters (the BPE
            kinds always have them, as ids 0 and 1).
        min_frequency: bpe/regex-bpe: a pair seen fewer times than this is never merged.
        max_training_chars: bpe/regex-bpe: learn from at most this many characters from the start
            of the training split (all when unset); bounds tokenizer training time on big corpora.
    """

    kind: str = "char"
    vocab_size: int | None = None
    pattern: str = "gpt4"
    path: str | None = None
    special_tokens: bool = False
    min_frequency: int = 2
    max_training_chars: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in TOKENIZER_KINDS:
            raise MinigptError(f"unknown tokenizer.kind {self.kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
        if self.is_trained:
            self.tokenizer_class.check_options(self)
            if self.path:
                raise MinigptError(
                    f"tokenizer.path is only read for kind pretrained, not {self.kind}; drop one of them"
                )
        elif not self.path:
            raise MinigptError(f"tokenizer.path is required for kind {self.kind}: a tokenizer.json file or a hub name")
        if self.max_training_chars is not None and self.max_training_chars <= 0:
            raise MinigptError(f"tokenizer.max_training_chars must be positive, got {self.max_training_chars}")

    @property
    def tokenizer_class(self) -> type[Tokenizer]:
        return TOKENIZER_KINDS[self.kind]

    @property
    def is_trained(self) -> bool:
        return self.tokenizer_class.trainable

    def fingerprint(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def train(self, texts: Iterable[str]) -> Tokenizer:
        """Learn the tokenizer from chunks of text (the first `max_training_chars` of them, unless
        the kind's vocabulary is an alphabet, which must see every character)."""
        kind = self.tokenizer_class
        limit = None if kind.learns_from_every_split else self.max_training_chars
        return kind.train(_first_chars(texts, limit), self)


def _first_chars(chunks: Iterable[str], limit: int | None) -> Iterator[str]:
    if limit is None:
        yield from chunks
        return
    for chunk in chunks:
        if limit <= 0:
            return
        yield chunk[:limit]
        limit -= len(chunk)
