"""Fitting a given tokenizer (a fine-tune source's) to new text."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_warn

from minigpt.tokenizers import CharTokenizer, Tokenizer


def covering(tokenizer: Tokenizer, text: str, source: str) -> Tokenizer:
    """The tokenizer, grown when it is a character vocabulary that lacks some of `text`'s characters.

    New characters are appended as new ids, so the ids a checkpoint was trained with keep their
    meaning; a warning names them, since their embeddings start untrained. Byte-level tokenizers
    already cover any text and come back unchanged.
    """
    if not isinstance(tokenizer, CharTokenizer):
        return tokenizer
    grown = tokenizer.extended(text)
    if grown is not tokenizer:
        added = grown.chars[tokenizer.vocab_size :]
        count = sum(text.count(char) for char in added)
        rank_zero_warn(
            f"{source} has {len(added)} characters outside the {tokenizer.vocab_size}-character vocabulary "
            f"({''.join(added)!r}, {count:,} occurrences); added them as ids {tokenizer.vocab_size}-"
            f"{grown.vocab_size - 1}, whose embeddings start untrained"
        )
    return grown
