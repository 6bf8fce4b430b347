from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA

from minigpt.constants import IGNORE_INDEX
from minigpt.data.instruct import Dolly, InstructDataModule, pad_batch
from minigpt.errors import MinigptError
from minigpt.prompts import PROMPT_STYLES, style_by_name
from minigpt.tokenizers import END_OF_TEXT_CHAR

FIXTURE = REPO / "tests" / "fixtures" / "dolly6.jsonl"


def write_records(path: Path, records: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


RECORDS = [
    {"instruction": "Name a fruit.", "context": "", "response": "Apple.", "category": "open_qa"},
    {"instruction": "Copy it.", "context": "Hi there", "response": "Hi there", "category": "closed_qa"},
]


def test_exact_masked_labels_and_padding(tmp_path: Path) -> None:
    data = InstructDataModule(
        path=str(write_records(tmp_path / "r.jsonl", RECORDS)), prompt_style="alpaca-short", val_fraction=0.5
    )
    data.prepare()
    tokenizer, style = data.tokenizer, style_by_name("alpaca-short")
    encode = tokenizer.encode
    by_prompt = {}
    for split in ("train", "val"):
        (example,) = data.examples(split)
        by_prompt[len(example.inputs)] = example
    for record in RECORDS:
        prompt = encode(style.format(record["instruction"], record["context"]))
        response = encode(record["response"] + END_OF_TEXT_CHAR)
        sequence = prompt + response
        example = by_prompt[len(sequence) - 1]
        assert example.inputs == sequence[:-1]
        # Nothing is scored until the last prompt token, which predicts the response's first.
        assert example.labels == [IGNORE_INDEX] * (len(prompt) - 1) + response
    short, long = sorted(by_prompt.values(), key=lambda e: len(e.inputs))
    inputs, labels = pad_batch([short, long], pad_id=7)
    assert inputs.shape == labels.shape == (2, len(long.inputs))  # the longest in the batch, not block_size
    assert inputs[0, len(short.inputs) :].eq(7).all() and labels[0, len(short.labels) :].eq(IGNORE_INDEX).all()
    assert inputs[0, : len(short.inputs)].tolist() == short.inputs


def test_unmasked_prompt_scores_every_token_in_training_only(tmp_path: Path) -> None:
    path = write_records(tmp_path / "r.jsonl", RECORDS * 2)
    data = InstructDataModule(path=str(path), prompt_style="plain", mask_prompt=False, val_fraction=0.5)
    for example in data.examples("train"):
        assert IGNORE_INDEX not in example.labels and example.labels[:-1] == example.inputs[1:]
    # Validation scores the response only, whatever mask_prompt says.
    assert all(example.labels[0] == IGNORE_INDEX for example in data.examples("val"))


def test_long_sequences_lose_their_end_and_prompt_filling_records_are_counted(tmp_path: Path) -> None:
    records = [
        {"instruction": "Say it.", "context": "", "response": "x" * 100},
        {"instruction": "y" * 100, "context": "", "response": "ok"},
        {"instruction": "Go.", "context": "", "response": "fine"},
    ]
    path = write_records(tmp_path / "r.jsonl", records)
    with pytest.warns(UserWarning, match="1 records of .* were left out"):
        data = InstructDataModule(path=str(path), prompt_style="plain", block_size=24, val_fraction=0.3, seed=0)
        data.prepare()
    assert data.dropped_records == 1
    examples = data.examples("train") + data.examples("val")
    assert len(examples) == 2 and max(len(e.inputs) for e in examples) == 24
    longest = max(examples, key=lambda e: len(e.inputs))
    assert data.tokenizer.decode(longest.inputs).startswith("Say it.\n\n")  # the prompt is kept whole


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"instruction": "a", "response": ', r"line 2 is not valid JSON \(Expecting value at column 34\)"),
        ('{"instruction": "a", "response": "b', r"line 2 is not valid JSON \(Unterminated string starting at column"),
        ('["a", "b"]', "line 2 is a JSON list, expected an object"),
        ('{"instruction": "a"}', "line 2 has no 'response' field"),
        ('{"instruction": "a", "response": 3}', "line 2 field 'response' is int, expected a string"),
    ],
)
def test_malformed_record_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    path = write_records(tmp_path / "bad.jsonl", [RECORDS[0], bad_line, *RECORDS])
    with pytest.raises(MinigptError, match=rf"bad.jsonl {message}.*data.skip_malformed=true"):
        InstructDataModule(path=str(path)).prepare()
    with pytest.warns(UserWarning, match="skipped 1 malformed records"):
        data = InstructDataModule(path=str(path), skip_malformed=True, val_fraction=0.3)
        data.prepare()
    assert data.skipped_records == 1
    assert len(data.examples("train")) + len(data.examples("val")) == 3


def test_split_is_seeded_and_categories_filter(tmp_path: Path) -> None:
    records = [{"instruction": f"q{i}", "response": f"a{i}", "category": "even" if i % 2 else "odd"} for i in range(20)]
    path = str(write_records(tmp_path / "r.jsonl", records))

    def val_inputs(**kwargs: object) -> list[list[int]]:
        return [e.inputs for e in InstructDataModule(path=path, val_fraction=0.25, **kwargs).examples("val")]

    assert val_inputs(seed=1) == val_inputs(seed=1) != val_inputs(seed=2)
    data = InstructDataModule(path=path, val_fraction=0.25, categories=["odd"], prompt_style="plain")
    texts = [data.tokenizer.decode(e.inputs) for e in data.examples("train") + data.examples("val")]
    assert len(texts) == 10 and all(int(t.split("\n")[0][1:]) % 2 == 0 for t in texts)
    with pytest.raises(MinigptError, match=r"no record of .* has category nope; its categories are even, odd"):
        InstructDataModule(path=path, categories=["nope"]).prepare()


def test_field_names_reach_other_schemas(tmp_path: Path) -> None:
    # Self-Instruct's seed tasks: the response sits in instances[0].output.
    task = {"instruction": "Add.", "instances": [{"input": "1 + 1", "output": "2"}]}
    path = write_records(tmp_path / "seed.jsonl", [task, task])
    data = InstructDataModule(
        path=str(path),
        prompt_style="plain",
        context_field="instances.0.input",
        response_field="instances.0.output",
        category_field=None,
        val_fraction=0.5,
    )
    (example,) = data.examples("train")
    assert data.tokenizer.decode([*example.inputs, example.labels[-1]]) == "Add.\n\n1 + 1\n\n2" + END_OF_TEXT_CHAR


def test_prompt_styles_with_and_without_context() -> None:
    alpaca = PROMPT_STYLES["alpaca"]
    assert alpaca.format("Do.", "Text").endswith("### Instruction:\nDo.\n\n### Input:\nText\n\n### Response:\n")
    assert "### Input" not in alpaca.format("Do.")
    assert PROMPT_STYLES["plain"].format("Do.") == "Do.\n\n"
    with pytest.raises(MinigptError, match="unknown prompt style 'chatml'; choose one of alpaca"):
        style_by_name("chatml")


def test_dolly_is_found_in_the_data_dir_and_says_what_to_do_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "data" / "dolly"
    home.mkdir(parents=True)
    (home / "databricks-dolly-15k.jsonl").write_text(FIXTURE.read_text())
    monkeypatch.setenv("MINIGPT_DATA_DIR", str(tmp_path / "data"))
    assert len(Dolly(block_size=2048, val_fraction=0.2).examples("train")) == 5
    monkeypatch.delenv("MINIGPT_DATA_DIR")

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(MinigptError, match=r"could not download https://huggingface\.co/datasets/databricks"):
        Dolly().prepare()


@pytest.mark.skipif(not (SHARED_DATA / "dolly/databricks-dolly-15k.jsonl").is_file(), reason="no shared data")
def test_the_full_dolly_file_reads() -> None:
    data = Dolly(path=str(SHARED_DATA / "dolly/databricks-dolly-15k.jsonl"), categories=["classification"])
    data.prepare()
    assert len(data.examples("train")) + len(data.examples("val")) + data.dropped_records == 2136


def test_batches_come_padded_from_the_loaders() -> None:
    data = InstructDataModule(path=str(FIXTURE), block_size=1024, batch_size=4, val_fraction=0.3)
    inputs, labels = next(iter(data.train_dataloader()))
    assert inputs.shape == labels.shape and inputs.shape[1] < 1024
    # Padded to the longest row: its last label (the end-of-text) is scored.
    assert (labels[:, -1] != IGNORE_INDEX).any()


@pytest.mark.slow
def test_a_checkpoints_character_vocabulary_grows_to_cover_the_records(pretrained: Path) -> None:
    from minigpt.checkpoint import load_checkpoint

    stored = load_checkpoint(pretrained).tokenizer
    data = InstructDataModule(
        path=str(FIXTURE), prompt_style="alpaca-short", block_size=512, tokenizer_from=str(pretrained)
    )
    with pytest.warns(UserWarning, match="characters outside the"):
        data.prepare()
    grown = data.tokenizer
    assert grown.chars[: stored.vocab_size] == stored.chars  # the checkpoint's ids keep their meaning
    assert END_OF_TEXT_CHAR in grown.chars and END_OF_TEXT_CHAR not in stored.chars
    assert data.examples("train")[0].labels[-1] == grown.encode(END_OF_TEXT_CHAR)[0]


def test_null_context_is_no_context(tmp_path: Path) -> None:
    records = [{"instruction": "Add.", "context": None, "response": "2", "category": None}] * 2
    data = InstructDataModule(path=str(write_records(tmp_path / "r.jsonl", records)), prompt_style="plain")
    (example,) = data.examples("train")
    assert data.tokenizer.decode(example.inputs).startswith("Add.\n\n2")  # the style's form without context


def test_a_pretty_printed_json_array_is_named_as_one(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(RECORDS, indent=2))
    with pytest.raises(MinigptError, match=r"records.json is a JSON array; instruction data is JSONL, one object per"):
        InstructDataModule(path=str(path)).prepare()
