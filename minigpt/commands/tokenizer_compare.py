"""Rank tokenizers on one corpus: compression, speed, round trip, and bits per character after training.

Every tokenizer trains the same GPT for the same number of steps on the same text; validation
bits per character (not loss per token, which depends on the vocabulary) says which one wins.
Each run's curves go to TensorBoard under `<output>/tensorboard/<label>`, so they overlay.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

from minigpt.commands.arguments import TrainingSetup
from minigpt.corpus.sources import check_readable_file
from minigpt.data import TextDataModule
from minigpt.errors import MinigptError
from minigpt.lightning_cli import ignore_known_warnings
from minigpt.model import GPTConfig
from minigpt.module import LanguageModel
from minigpt.tokenizers import TokenizerSpec, trainable_kinds


@dataclass
class ComparisonRow:
    label: str
    vocab_size: int
    chars_per_token: float
    encode_mb_per_s: float
    round_trip: bool
    val_bits_per_char: float | None
    train_seconds: float | None


def parse_tokenizer_label(label: str) -> TokenizerSpec:
    """`char`, `bpe:2048`, `regex-bpe:2048` or `regex-bpe:2048:gpt2` as a TokenizerSpec."""
    kind, *rest = label.split(":")
    usage = f"--tokenizers: {label!r} should read KIND[:VOCAB_SIZE[:PATTERN]] with a trainable KIND, e.g. bpe:2048"
    if kind not in trainable_kinds() or len(rest) > 2:
        raise MinigptError(usage)
    try:
        vocab_size = int(rest[0]) if rest else None
    except ValueError:
        raise MinigptError(usage) from None
    return TokenizerSpec(kind=kind, vocab_size=vocab_size, pattern=rest[1] if len(rest) > 1 else "gpt4")


def compare_tokenizers(
    path: Path, labels: list[str], setup: TrainingSetup, output: Path, val_fraction: float = 0.1
) -> list[ComparisonRow]:
    rows = []
    for label in labels:
        spec = parse_tokenizer_label(label)
        rows.append(_measure(label, spec, path, setup, output, val_fraction))
    return rows


def _measure(
    label: str, spec: TokenizerSpec, path: Path, setup: TrainingSetup, output: Path, val_fraction: float
) -> ComparisonRow:
    data = TextDataModule(
        path=str(path),
        tokenizer=spec,
        block_size=setup.block_size,
        batch_size=setup.batch_size,
        val_fraction=val_fraction,
        seed=setup.seed,
    )
    data.prepare()
    tokenizer = data.tokenizer
    assert tokenizer is not None
    text = path.read_text(encoding="utf-8")
    started = time.perf_counter()
    ids = tokenizer.encode(text)
    encode_seconds = time.perf_counter() - started
    round_trip = tokenizer.decode(ids) == text
    bits, seconds = _train(label, data, setup, output) if setup.steps > 0 else (None, None)
    return ComparisonRow(
        label=label,
        vocab_size=tokenizer.vocab_size,
        chars_per_token=len(text) / len(ids),
        encode_mb_per_s=len(text.encode()) / encode_seconds / 1e6,
        round_trip=round_trip,
        val_bits_per_char=bits,
        train_seconds=seconds,
    )


def _train(label: str, data: TextDataModule, setup: TrainingSetup, output: Path) -> tuple[float, float]:
    pl.seed_everything(setup.seed, verbose=False)
    model = LanguageModel(
        gpt=GPTConfig(n_layer=setup.n_layer, n_head=setup.n_head, n_embd=setup.n_embd, bias=False),
        learning_rate=setup.learning_rate,
        min_lr=setup.learning_rate / 10,
        warmup_steps=max(1, min(100, setup.steps // 10)),
    )
    trainer = pl.Trainer(
        max_steps=setup.steps,
        val_check_interval=setup.steps,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        log_every_n_steps=max(1, setup.steps // 20),
        logger=TensorBoardLogger(output / "tensorboard", name=label.replace(":", "-"), version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - started
    return float(trainer.callback_metrics["val/bits_per_char"]), seconds


def markdown_table(rows: list[ComparisonRow], setup: TrainingSetup) -> str:
    trained = f"val bits/char after {setup.steps} steps" if setup.steps else "val bits/char (not trained)"
    lines = [
        f"| tokenizer | vocab | chars/token | encode MB/s | round trip | {trained} | train s |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        bits = "—" if row.val_bits_per_char is None else f"{row.val_bits_per_char:.3f}"
        seconds = "—" if row.train_seconds is None else f"{row.train_seconds:.0f}"
        lines.append(
            f"| {row.label} | {row.vocab_size} | {row.chars_per_token:.2f} | {row.encode_mb_per_s:.2f} | "
            f"{'exact' if row.round_trip else 'LOSSY'} | {bits} | {seconds} |"
        )
    return "\n".join(lines)


def run_compare(options: argparse.Namespace) -> None:
    path = check_readable_file(Path(options.input), "--input")
    setup = TrainingSetup(**{setting.name: getattr(options, setting.name) for setting in fields(TrainingSetup)})
    if setup.steps < 0:
        raise MinigptError(f"--steps must be 0 or more, got {setup.steps}")
    output = Path(options.output)
    # One table is the output: keep Lightning's per-run banners out of it.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    ignore_known_warnings()
    rows = compare_tokenizers(path, options.tokenizers, setup, output, options.val_fraction)
    table = markdown_table(rows, setup)
    output.mkdir(parents=True, exist_ok=True)
    (output / "comparison.md").write_text(table + "\n")
    print(table)
