"""Fitting a given tokenizer (a fine-tune source's) to new text."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_warn

from minigpt.tokenizers import Tokenizer


def covering(tokenizer: Tokenizer, text: str, source: str) -> Tokenizer:
    """The tokenizer, grown to cover `text` when it lacks some of its symbols (a character vocabulary).

    New symbols are appended as new ids, so the ids a checkpoint was trained with keep their
    meaning; a warning names them, since their embeddings start untrained. Byte-level tokenizers
    already cover any text and come back unchanged.
    """
    grown = tokenizer.extended(text)
    if grown is not tokenizer:
        old, new = tokenizer.vocab_size, grown.vocab_size
        added = [grown.decode([token_id]) for token_id in range(old, new)]
        count = sum(text.count(symbol) for symbol in added)
        rank_zero_warn(
            f"{source} has {len(added)} characters outside the {old}-character vocabulary "
            f"({''.join(added)!r}, {count:,} occurrences); added them as ids {old}-{new - 1}, "
            "whose embeddings start untrained"
        )
    return grown
