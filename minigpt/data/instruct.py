"""Instruction tuning data: JSONL records of instruction, context and response, as padded batches.

Each record becomes `prompt + response + end-of-text`, where the prompt is the record's
instruction and context wrapped in a prompt style (minigpt.prompts). The model reads the
sequence without its last token and is scored on predicting the next one; label -100 marks
positions that are not scored (the prompt, when `mask_prompt` is on, and padding).
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from minigpt.constants import IGNORE_INDEX
from minigpt.corpus.sources import KnownFile, decode_text, resolve_file
from minigpt.data.base import TokenDataModule
from minigpt.errors import MinigptError
from minigpt.prompts import PromptStyle, style_by_name
from minigpt.tokenizers import END_OF_TEXT_CHAR, CharTokenizer, Tokenizer


@dataclass(frozen=True)
class InstructionRecord:
    instruction: str
    context: str
    response: str
    category: str | None
    line: int


@dataclass(frozen=True)
class RecordFields:
    """Where each part of a record lives; dotted paths reach into nested values (`instances.0.input`)."""

    instruction: str = "instruction"
    context: str | None = "context"
    response: str = "response"
    category: str | None = "category"


class MalformedRecord(ValueError):
    pass


@overload
def _lookup(record: Any, path: str, required: Literal[True]) -> str: ...


@overload
def _lookup(record: Any, path: str, required: bool) -> str | None: ...


def _lookup(record: Any, path: str, required: bool) -> str | None:
    value = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif required:
            raise MalformedRecord(f"has no {path!r} field")
        else:
            return None
    if value is None and not required:
        return None  # an optional field written as null: absent
    if not isinstance(value, str):
        raise MalformedRecord(f"field {path!r} is {type(value).__name__}, expected a string")
    return value


def parse_record(line: str, number: int, fields: RecordFields) -> InstructionRecord:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        # Some of json's messages end in "at" ("Unterminated string starting at"): one "at" is enough.
        raise MalformedRecord(f"is not valid JSON ({error.msg.removesuffix(' at')} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise MalformedRecord(f"is a JSON {type(record).__name__}, expected an object")
    return InstructionRecord(
        instruction=_lookup(record, fields.instruction, required=True),
        context=(_lookup(record, fields.context, required=False) or "") if fields.context else "",
        response=_lookup(record, fields.response, required=True),
        category=_lookup(record, fields.category, required=False) if fields.category else None,
        line=number,
    )


def read_records(path: Path, fields: RecordFields, skip_malformed: bool) -> tuple[list[InstructionRecord], int]:
    """The file's records and how many malformed ones were skipped (only when asked to skip)."""
    text = decode_text(path.read_bytes(), path)
    if text.lstrip().startswith("["):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, list):
            raise MinigptError(
                f"data.path: {path} is a JSON array; instruction data is JSONL, one object per line "
                "(convert it with: jq -c '.[]' FILE > FILE.jsonl)"
            )
    records, skipped, first_problem = [], 0, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(line, number, fields))
        except MalformedRecord as problem:
            if not skip_malformed:
                raise MinigptError(
                    f"data.path: {path} line {number} {problem}; fix or remove that record, "
                    "or set data.skip_malformed=true to skip malformed records"
                ) from None
            skipped += 1
            first_problem = first_problem or f"line {number} {problem}"
    if skipped:
        rank_zero_warn(f"skipped {skipped} malformed records of {path} (first: {first_problem})")
    if not records:
        raise MinigptError(f"data.path: {path} has no instruction records; give a JSONL file with one object per line")
    return records, skipped


@dataclass(frozen=True)
class Example:
    """One training sequence: model inputs and next-token labels of the same length."""

    inputs: list[int]
    labels: list[int]


def encode_example(
    record: InstructionRecord,
    tokenizer: Tokenizer,
    style: PromptStyle,
    block_size: int,
    mask_prompt: bool,
    source: Path,
) -> Example | None:
    """The record as inputs and labels, or None when its prompt alone fills the block.

    Truncation rule: a sequence longer than block_size + 1 tokens loses its end (the tail of the
    response and its end-of-text), so the prompt is always seen whole.
    """
    try:
        prompt = tokenizer.encode(style.format(record.instruction, record.context))
        response = tokenizer.encode(record.response)
    except MinigptError as error:
        raise MinigptError(f"data.path: {source} line {record.line}: {error}") from None
    eot = tokenizer.eot_id
    sequence = (prompt + response + ([] if eot is None else [eot]))[: block_size + 1]
    if len(prompt) >= len(sequence):
        return None
    labels = sequence[1:]
    if mask_prompt:
        # Label i is token i + 1: the first response token is label len(prompt) - 1.
        labels = [IGNORE_INDEX] * (len(prompt) - 1) + labels[len(prompt) - 1 :]
    return Example(inputs=sequence[:-1], labels=labels)


def pad_batch(examples: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest example of the batch; padded labels are not scored."""
    longest = max(len(example.inputs) for example in examples)
    inputs = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        inputs[row, : len(example.inputs)] = torch.tensor(example.inputs)
        labels[row, : len(example.labels)] = torch.tensor(example.labels)
    return inputs, labels


class InstructDataModule(TokenDataModule):
    """Instruction tuning on any JSONL file of instruction / context / response records.

    The records are shuffled with `seed`, optionally filtered by category and capped at
    `max_records`, and split into train and validation. Validation always scores response tokens
    only, so `validate` reports the response loss and perplexity whatever `mask_prompt` says.

    Args:
        path: The JSONL file. Dolly finds its own (see minigpt.data.Dolly).
        block_size: Longest sequence in tokens; longer ones lose the end of their response.
        batch_size: Sequences per batch, padded to the longest of the batch.
        prompt_style: How instruction and context are wrapped: alpaca, alpaca-short or plain.
            Saved in checkpoints, so generate and chat wrap prompts the same way.
        mask_prompt: Train on response tokens only (prompt labels set to the ignore index -100).
        val_fraction: Share of the records held out for validation.
        categories: Keep only records of these categories (all when unset).
        max_records: Use at most this many records, taken after shuffling.
        skip_malformed: Skip and count malformed records instead of stopping at the first.
        instruction_field: Field holding the instruction (dotted paths reach nested values).
        context_field: Field holding optional context; null when the records have none.
        response_field: Field holding the response.
        category_field: Field holding the category; null when the records have none.
        seed: Seed of the shuffle, the split and the training order.
        num_workers: Dataloader worker processes.
        tokenizer_from: Take the tokenizer of this minigpt checkpoint, GPT-2 directory or hub name
            (linked from model.init_from, and set to --ckpt_path when a run resumes); without it,
            a character vocabulary of the records. A character vocabulary grows to cover the records.
    """

    # Always set here (the base allows None for minigpt.data.Prompts).
    block_size: int
    val_fraction: float

    def __init__(
        self,
        path: str | None = None,
        block_size: int = 256,
        batch_size: int = 16,
        prompt_style: str = "alpaca",
        mask_prompt: bool = True,
        val_fraction: float = 0.05,
        categories: list[str] | None = None,
        max_records: int | None = None,
        skip_malformed: bool = False,
        instruction_field: str = "instruction",
        context_field: str | None = "context",
        response_field: str = "response",
        category_field: str | None = "category",
        seed: int = 1337,
        num_workers: int = 0,
        tokenizer_from: str | None = None,
    ) -> None:
        super().__init__(path, block_size, batch_size, val_fraction, num_workers, seed, tokenizer_from)
        if max_records is not None and max_records < 2:
            raise MinigptError(
                f"data.max_records must be at least 2 (one to train, one to validate), got {max_records}"
            )
        self.style = style_by_name(prompt_style)
        self.prompt_style = prompt_style
        self.mask_prompt = mask_prompt
        self.categories = categories
        self.max_records = max_records
        self.skip_malformed = skip_malformed
        self.fields = RecordFields(instruction_field, context_field, response_field, category_field)
        self._examples: dict[str, list[Example]] | None = None
        self.skipped_records = 0
        self.dropped_records = 0
        # Held-out records that fit the block, for generation-based evaluation.
        self.val_records: list[InstructionRecord] = []

    def _select(self, records: list[InstructionRecord], path: Path) -> list[InstructionRecord]:
        random.Random(self.seed).shuffle(records)
        if self.categories:
            wanted = set(self.categories)
            present = sorted({r.category for r in records if r.category is not None})
            records = [r for r in records if r.category in wanted]
            if not records:
                raise MinigptError(
                    f"data.categories: no record of {path} has category {', '.join(sorted(wanted))}; "
                    f"its categories are {', '.join(present) or 'none'}"
                )
        if self.max_records is not None:
            records = records[: self.max_records]
        if len(records) < 2:
            raise MinigptError(f"data.path: {path} gives {len(records)} record; at least 2 are needed")
        return records

    def prepare(self) -> None:
        """Read, select, split and tokenize the records; cheap once done."""
        if self._examples is not None:
            return
        path = resolve_file(self.path, self.known_file)
        records, self.skipped_records = read_records(path, self.fields, self.skip_malformed)
        records = self._select(records, path)
        # Every record (so validation meets no unknown character), the style's own text and
        # ASCII's end-of-text character, which ends each response in a character vocabulary.
        text = "".join(r.instruction + r.context + r.response for r in records)
        text += self.style.with_context + self.style.without_context + END_OF_TEXT_CHAR
        # Without a tokenizer given, a character vocabulary of the records.
        self.tokenizer = self.given_tokenizer(lambda: [text], str(path)) or CharTokenizer.from_text(text)
        if self.tokenizer.eot_id is None:
            rank_zero_warn(
                "the tokenizer has no end-of-text token: responses are not taught to stop, so generation "
                "ends only at max_new_tokens or a stop sequence"
            )
        n_val = max(1, round(len(records) * self.val_fraction))
        splits = {"val": records[:n_val], "train": records[n_val:]}
        self._examples = {}
        self.dropped_records = 0
        for split, chosen in splits.items():
            examples = []
            for record in chosen:
                example = encode_example(
                    record, self.tokenizer, self.style, self.block_size, self.mask_prompt or split == "val", path
                )
                if example is None:
                    self.dropped_records += 1
                    continue
                examples.append(example)
                if split == "val":
                    self.val_records.append(record)
            if not examples:
                raise MinigptError(
                    f"data.path: no {split} record of {path} fits data.block_size {self.block_size} with room "
                    "for a response; raise data.block_size or use a shorter prompt style"
                )
            self._examples[split] = examples
        if self.dropped_records:
            rank_zero_warn(
                f"{self.dropped_records} records of {path} were left out: their prompt alone fills "
                f"data.block_size {self.block_size}"
            )

    def examples(self, split: str) -> list[Example]:
        self.prepare()
        assert self._examples is not None
        return self._examples[split]

    def _pad_id(self) -> int:
        # Padding is never scored and sits after the tokens that matter: any id will do.
        assert self.tokenizer is not None
        pad = self.tokenizer.pad_id
        return pad if pad is not None else (self.tokenizer.eot_id or 0)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        examples = self.examples(split)
        collate = functools.partial(pad_batch, pad_id=self._pad_id())
        return self.loader(examples, self.batch_size, shuffle=shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class Dolly(InstructDataModule):
    """Databricks Dolly-15k: 15,011 human-written instruction records in eight categories.

    Found at `data.path`, else `$MINIGPT_DATA_DIR/dolly/databricks-dolly-15k.jsonl`, else the
    cache (`~/.cache/minigpt/dolly/databricks-dolly-15k.jsonl`), else downloaded there from the
    Hugging Face hub dataset `databricks/databricks-dolly-15k` and checked by sha256.
    """

    known_file = KnownFile(
        name="dolly",
        filename="databricks-dolly-15k.jsonl",
        url="https://huggingface.co/datasets/databricks/databricks-dolly-15k/resolve/main/databricks-dolly-15k.jsonl",
        sha256="2df9083338b4abd6bceb5635764dab5d833b393b55759dffb0959b6fcbf794ec",
    )
