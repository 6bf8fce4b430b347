from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from conftest import LINES

from minigpt.errors import MinigptError
from minigpt.pretrained import load_tokenizer
from minigpt.tokenizers import (
    END_OF_TEXT,
    TOKENIZER_KINDS,
    BPETokenizer,
    CharTokenizer,
    PretrainedTokenizer,
    Tokenizer,
    TokenizerSpec,
    tokenizer_from_json,
    trainable_kinds,
)

TRICKY = "Hello,  world!\n\tTabs and  spaces\n\nünïcödé — “quotes” 🙂\r\n   trailing   \n\n\n"
TRAINING = [line * 3 for line in LINES] * 20 + [TRICKY]


def trained(kind: str, vocab_size: int = 300, pattern: str = "gpt4") -> BPETokenizer:
    options = TokenizerSpec(kind=kind, vocab_size=vocab_size, pattern=pattern, min_frequency=1)
    return options.train(TRAINING)


def test_char_round_trip_on_tricky_text() -> None:
    tokenizer = CharTokenizer.from_text(TRICKY)
    ids = tokenizer.encode(TRICKY)
    assert len(ids) == len(TRICKY)
    assert tokenizer.decode(ids) == TRICKY
    assert tokenizer.vocab_size == len(set(TRICKY))
    assert tokenizer.eot_id is None and tokenizer.pad_id is None


def test_ids_follow_sorted_characters() -> None:
    tokenizer = CharTokenizer.from_text("cab\n")
    assert tokenizer.chars == ["\n", "a", "b", "c"]
    assert tokenizer.encode("abc") == [1, 2, 3]


def test_char_special_tokens_come_after_the_alphabet() -> None:
    tokenizer = CharTokenizer.from_text("cab\n", special_tokens=True)
    assert tokenizer.vocab_size == 6
    assert (tokenizer.eot_id, tokenizer.pad_id) == (4, 5)
    assert tokenizer.decode([1, tokenizer.eot_id]) == "a" + END_OF_TEXT
    assert tokenizer.token_char_lengths().tolist() == [1, 1, 1, 1, 0, 0]
    restored = tokenizer_from_json(tokenizer.to_json())
    assert restored.eot_id == 4 and restored.vocab_size == 6


def test_unknown_characters_are_named() -> None:
    tokenizer = CharTokenizer.from_text("abc")
    with pytest.raises(MinigptError, match="outside the tokenizer's vocabulary: 'xz'"):
        tokenizer.encode("axbzc")


def test_json_round_trip() -> None:
    tokenizer = CharTokenizer.from_text(TRICKY)
    restored = tokenizer_from_json(tokenizer.to_json())
    assert restored.chars == tokenizer.chars
    assert restored.decode(restored.encode(TRICKY)) == TRICKY


@pytest.mark.parametrize("text", ["not json", '{"chars": ["a"]}', '{"kind": "sentencepiece"}'])
def test_foreign_tokenizer_json_is_refused(text: str) -> None:
    with pytest.raises(MinigptError, match="tokenizer"):
        tokenizer_from_json(text, source="tok.json")


@pytest.mark.parametrize(("kind", "pattern"), [("bpe", "gpt4"), ("regex-bpe", "gpt2"), ("regex-bpe", "gpt4")])
def test_bpe_round_trips_tricky_text_and_survives_json(kind: str, pattern: str) -> None:
    tokenizer = trained(kind, pattern=pattern)
    unseen = TRICKY + "Ωμέγα 漢字 \x00\x7f ｆｕｌｌ " + END_OF_TEXT + " tail"
    ids = tokenizer.encode(unseen)
    assert tokenizer.decode(ids) == unseen
    assert len(ids) < len(unseen.encode())  # merges were learned and used
    restored = tokenizer_from_json(tokenizer.to_json())
    assert restored.encode(unseen) == ids
    assert restored.kind == kind and restored.vocab_size == tokenizer.vocab_size == 300


def test_bpe_special_tokens_have_fixed_ids() -> None:
    tokenizer = trained("bpe")
    assert (tokenizer.eot_id, tokenizer.pad_id) == (0, 1)
    assert tokenizer.encode("a" + END_OF_TEXT + "b")[1] == 0


@pytest.mark.parametrize("kind", ["char", "bpe", "regex-bpe"])
def test_token_char_lengths_add_up_to_the_text_length(kind: str) -> None:
    tokenizer = CharTokenizer.from_text(TRICKY) if kind == "char" else trained(kind)
    lengths = tokenizer.token_char_lengths()
    # Multi-byte characters split across tokens still count once each.
    assert int(lengths[np.array(tokenizer.encode(TRICKY))].sum()) == len(TRICKY)


def test_merges_span_words_only_without_a_regex() -> None:
    plain, regex = trained("bpe", 400), trained("regex-bpe", 400)
    spans_space = [tok for tok in plain.backend.get_vocab() if "Ġ" in tok[1:]]
    assert spans_space, "plain BPE should learn merges across spaces"
    assert not [tok for tok in regex.backend.get_vocab() if "Ġ" in tok[1:] and tok.strip("Ġ")]


@pytest.mark.parametrize(
    ("pattern", "text", "pieces"),
    [
        ("gpt2", "it's 123456 ok", ["it", "'s", " 123456", " ok"]),
        ("gpt4", "it's 123456 ok", ["it", "'s", " ", "123", "456", " ok"]),
        ("gpt2", "HE'S", ["HE", "'", "S"]),
        ("gpt4", "HE'S", ["HE", "'S"]),
        ("gpt2", "end!\n\nNext", ["end", "!", "\n", "\n", "Next"]),
        ("gpt4", "end!\n\nNext", ["end", "!\n\n", "Next"]),
        ("gpt4", "a   b", ["a", "  ", " b"]),
    ],
)
def test_regex_pre_tokenizer_splits_as_specified(pattern: str, text: str, pieces: list[str]) -> None:
    tokenizer = trained("regex-bpe", pattern=pattern)
    split = tokenizer.backend.pre_tokenizer.pre_tokenize_str(text)
    symbols = {value: key for key, value in _byte_symbols().items()}
    assert ["".join(symbols[c] for c in piece) for piece, _ in split] == pieces


def _byte_symbols() -> dict[str, str]:
    from minigpt.tokenizers.huggingface import byte_of_symbol

    return {chr(byte): symbol for symbol, byte in byte_of_symbol().items()}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "bpe", "vocab_size": 200}, "vocab_size 200 is smaller than the byte alphabet"),
        ({"kind": "bpe"}, "vocab_size is required"),
        ({"kind": "regex-bpe", "vocab_size": 512, "pattern": "gpt5"}, "unknown tokenizer.pattern 'gpt5'"),
        ({"kind": "wordpiece"}, "unknown tokenizer.kind 'wordpiece'"),
        ({"kind": "pretrained"}, "tokenizer.path is required"),
        ({"kind": "bpe", "vocab_size": 512, "path": "x.json"}, "only read for kind pretrained"),
    ],
)
def test_impossible_specs_are_refused(spec: dict, message: str) -> None:
    with pytest.raises(MinigptError, match=message):
        TokenizerSpec(**spec)


def test_char_vocab_size_smaller_than_the_alphabet_is_refused() -> None:
    with pytest.raises(MinigptError, match="vocab_size 3 is smaller than the corpus's alphabet of 4 characters"):
        TokenizerSpec(kind="char", vocab_size=3).train(["abcd"])


def test_pretrained_loads_a_tokenizer_json(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    trained("regex-bpe").backend.save(str(path))  # a plain Hugging Face tokenizer.json
    tokenizer = load_tokenizer(str(path))
    assert isinstance(tokenizer, PretrainedTokenizer)
    assert tokenizer.decode(tokenizer.encode(TRICKY)) == TRICKY
    assert (tokenizer.eot_id, tokenizer.pad_id) == (0, 1)
    restored = tokenizer_from_json(tokenizer.to_json())
    assert restored.encode(TRICKY) == tokenizer.encode(TRICKY)


def test_pretrained_loads_a_minigpt_tokenizer_file(tmp_path: Path) -> None:
    path = tmp_path / "tok.json"
    path.write_text(trained("bpe").to_json())
    assert load_tokenizer(str(path)).kind == "bpe"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"vocab": {"a": 0}}', "is not a tokenizer file \\(neither"),
        ("plain text, not JSON", "is not a tokenizer file \\(neither"),
        ('{"model": {"type": "Nonsense"}}', "is not a tokenizer file"),
        ('{"kind": "bpe", "backend": {"model": 3}}', "is a damaged bpe tokenizer"),
    ],
)
def test_tokenizer_file_of_the_wrong_format(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tok.json"
    path.write_text(content)
    with pytest.raises(MinigptError, match=message) as error:
        load_tokenizer(str(path))
    assert "\n" not in str(error.value)


def test_missing_tokenizer_file(tmp_path: Path) -> None:
    with pytest.raises(MinigptError, match=r"absent\.json does not exist"):
        load_tokenizer(str(tmp_path / "absent.json"))


def test_hub_name_offline_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        MinigptError, match=r"tokenizer\.path: could not download 'gpt2' from the Hugging Face hub"
    ) as error:
        load_tokenizer("gpt2")
    assert "\n" not in str(error.value)


def test_gpt2_style_json_gets_pad_from_end_of_text(tmp_path: Path) -> None:
    backend = trained("regex-bpe").backend
    data = json.loads(backend.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] == END_OF_TEXT]
    del data["model"]["vocab"]["<|pad|>"]
    path = tmp_path / "gpt2-like.json"
    path.write_text(json.dumps(data))
    tokenizer = load_tokenizer(str(path))
    assert tokenizer.pad_id == tokenizer.eot_id == 0


class ByteTokenizer(Tokenizer):
    """A tokenizer kind defined outside the package: one id per UTF-8 byte."""

    kind = "test-bytes"
    trainable = True

    @classmethod
    def train(cls, texts: Iterable[str], options: object) -> ByteTokenizer:
        return cls()

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def token_char_lengths(self) -> np.ndarray:
        return np.array([0 if 0x80 <= byte < 0xC0 else 1 for byte in range(256)])

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind})

    @classmethod
    def from_dict(cls, data: dict) -> ByteTokenizer:
        return cls()

    def to_huggingface(self) -> str:
        raise NotImplementedError


@pytest.mark.slow
def test_a_new_kind_is_one_class_and_works_everywhere(corpus: Path) -> None:
    """Defining the class registers it: the config block, training, checkpoints and generation take it."""
    from conftest import tiny_fit_args

    from minigpt.checkpoint import load_checkpoint
    from minigpt.cli import main

    assert TOKENIZER_KINDS["test-bytes"] is ByteTokenizer and "test-bytes" in trainable_kinds()
    main(tiny_fit_args(corpus, max_steps=5, **{"data.tokenizer.kind": "test-bytes"}))
    checkpoint = load_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")
    assert isinstance(checkpoint.tokenizer, ByteTokenizer) and checkpoint.model.config.vocab_size == 256
    assert checkpoint.tokenizer.encode("RO") == [82, 79] and isinstance(checkpoint.generate("ROMEO:", 5)[0], str)


@pytest.mark.parametrize("kind", ["char", "bpe", "regex-bpe"])
def test_tokenizer_train_writes_a_tokenizer_json_other_tools_read(kind: str, corpus: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer as Backend
    from transformers import PreTrainedTokenizerFast

    from minigpt.cli import main

    output = tmp_path / "tok.json"
    size = [] if kind == "char" else ["--vocab_size=300"]
    main(["tokenizer", "train", f"--kind={kind}", *size, f"--input={corpus}", f"--output={output}"])
    text = corpus.read_text(encoding="utf-8") + TRICKY.replace("🙂", "").replace("“", "").replace("”", "")
    ours = load_tokenizer(str(output))
    assert ours.kind == kind  # minigpt's own form, from tok.minigpt.json beside the file
    if kind == "char":
        text = "".join(char for char in text if char in ours.chars)
    ids = ours.encode(text)
    assert Backend.from_file(str(output)).encode(text, add_special_tokens=False).ids == ids
    assert PreTrainedTokenizerFast(tokenizer_file=str(output)).encode(text) == ids
    (tmp_path / "tok.minigpt.json").unlink()
    assert load_tokenizer(str(output)).encode(text) == ids  # the tokenizer.json alone: the same ids
