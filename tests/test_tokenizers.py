from __future__ import annotations

import pytest

from minigpt.errors import MinigptError
from minigpt.tokenizers import CharTokenizer, tokenizer_from_json

TRICKY = "Hello,  world!\n\tTabs and  spaces\n\nünïcödé — “quotes” 🙂\r\n"


def test_char_round_trip_on_tricky_text() -> None:
    tokenizer = CharTokenizer.train(TRICKY)
    ids = tokenizer.encode(TRICKY)
    assert len(ids) == len(TRICKY)
    assert tokenizer.decode(ids) == TRICKY
    assert tokenizer.vocab_size == len(set(TRICKY))


def test_ids_follow_sorted_characters() -> None:
    tokenizer = CharTokenizer.train("cab\n")
    assert tokenizer.chars == ["\n", "a", "b", "c"]
    assert tokenizer.encode("abc") == [1, 2, 3]


def test_unknown_characters_are_named() -> None:
    tokenizer = CharTokenizer.train("abc")
    with pytest.raises(MinigptError, match="outside the tokenizer's vocabulary: 'xz'"):
        tokenizer.encode("axbzc")


def test_json_round_trip() -> None:
    tokenizer = CharTokenizer.train(TRICKY)
    restored = tokenizer_from_json(tokenizer.to_json())
    assert restored.chars == tokenizer.chars
    assert restored.decode(restored.encode(TRICKY)) == TRICKY


@pytest.mark.parametrize("text", ["not json", '{"chars": ["a"]}', '{"kind": "sentencepiece"}'])
def test_foreign_tokenizer_json_is_refused(text: str) -> None:
    with pytest.raises(MinigptError, match="tokenizer"):
        tokenizer_from_json(text, source="tok.json")
