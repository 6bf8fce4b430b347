"""`minigpt tokenizer train` and `minigpt tokenizer compare` (minigpt.commands.tokenizer_compare)."""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from minigpt.corpus.sources import check_readable_file
from minigpt.corpus.streaming import TextFile
from minigpt.errors import MinigptError
from minigpt.tokenizers import SPLIT_PATTERNS, TokenizerSpec, minigpt_settings_path, trainable_kinds


@dataclass
class TrainingSetup:
    """The one model and schedule `tokenizer compare` trains with every tokenizer."""

    steps: int = 300
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    learning_rate: float = 3e-3
    seed: int = 1337


DEFAULT_COMPARISON = ["char", "bpe:512", "bpe:2048", "regex-bpe:512", "regex-bpe:2048", "regex-bpe:2048:gpt2"]


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt tokenizer train",
        description="Train a tokenizer on a text file and save it as a Hugging Face tokenizer.json, with "
        "minigpt's own settings beside it in OUTPUT's .minigpt.json sibling (use it with "
        "data.tokenizer: {kind: pretrained, path: OUTPUT}). Give it training text only.",
    )
    parser.add_argument("--kind", required=True, choices=trainable_kinds())
    parser.add_argument("--vocab_size", type=int, default=None, help="ids to learn (bpe kinds: 258 or more)")
    parser.add_argument("--pattern", default="gpt4", choices=sorted(SPLIT_PATTERNS), help="regex-bpe's split regex")
    parser.add_argument("--input", required=True, help="UTF-8 text file to learn from")
    parser.add_argument("--output", required=True, help="the tokenizer.json to write (e.g. tok.json)")
    parser.add_argument("--special_tokens", action="store_true", help="char: add end-of-text and padding ids")
    parser.add_argument("--min_frequency", type=int, default=2, help="bpe kinds: rarest pair worth a merge")
    parser.add_argument("--max_training_chars", type=int, default=None, help="learn from the first N characters")
    parser.add_argument("--errors", default="strict", choices=["strict", "replace", "ignore"])
    return parser


def run_train(args: Sequence[str]) -> None:
    options = train_parser().parse_args(args)
    spec = TokenizerSpec(
        kind=options.kind,
        vocab_size=options.vocab_size,
        pattern=options.pattern,
        special_tokens=options.special_tokens,
        min_frequency=options.min_frequency,
        max_training_chars=options.max_training_chars,
    )
    source = TextFile(check_readable_file(Path(options.input), "--input"), options.errors, key="--input")
    tokenizer = spec.train(source.chunks())
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(tokenizer.to_huggingface(), encoding="utf-8")
    settings = minigpt_settings_path(output)
    settings.write_text(tokenizer.to_json(), encoding="utf-8")
    print(f"{spec.kind} tokenizer with {tokenizer.vocab_size} ids written to {output} (and {settings.name})")


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt tokenizer compare",
        description="Train the same small GPT with several tokenizers on one corpus and rank them by "
        "validation bits per character. Prints a markdown table; curves go to OUTPUT/tensorboard.",
    )
    parser.add_argument("--input", required=True, help="UTF-8 text file; its last val_fraction validates")
    parser.add_argument(
        "--tokenizers",
        nargs="+",
        default=DEFAULT_COMPARISON,
        help="KIND[:VOCAB_SIZE[:PATTERN]] each (default: %(default)s)",
    )
    parser.add_argument("--output", default="tokenizer-comparison", help="folder for the table and TensorBoard logs")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    setup_help = {
        "steps": "training steps per tokenizer (0: measure the tokenizers only)",
        "n_layer": "the model every tokenizer trains: blocks",
        "n_head": "attention heads",
        "n_embd": "width",
        "block_size": "context in tokens",
        "batch_size": "windows per batch",
        "learning_rate": "peak AdamW learning rate (cosine decay to a tenth)",
        "seed": "seed of the weights and batches",
    }
    for setting in fields(TrainingSetup):
        parser.add_argument(
            f"--{setting.name}",
            type=type(setting.default),
            default=setting.default,
            help=f"{setup_help[setting.name]} (%(default)s)",
        )
    return parser


def run_compare(args: Sequence[str]) -> None:
    options = compare_parser().parse_args(args)
    path = check_readable_file(Path(options.input), "--input")
    setup = TrainingSetup(**{setting.name: getattr(options, setting.name) for setting in fields(TrainingSetup)})
    if setup.steps < 0:
        raise MinigptError(f"--steps must be 0 or more, got {setup.steps}")
    from minigpt.commands.tokenizer_compare import compare_tokenizers, markdown_table

    output = Path(options.output)
    # One table is the output: keep Lightning's per-run banners out of it.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    rows = compare_tokenizers(path, options.tokenizers, setup, output, options.val_fraction)
    table = markdown_table(rows, setup)
    output.mkdir(parents=True, exist_ok=True)
    (output / "comparison.md").write_text(table + "\n")
    print(table)


SUBCOMMANDS = {
    "train": (run_train, "train a tokenizer on a text file and save it"),
    "compare": (run_compare, "train the same small GPT with several tokenizers and rank them"),
}


def run(args: Sequence[str]) -> None:
    subcommand, rest = (args[1], args[2:]) if len(args) > 1 else (None, [])
    if subcommand in SUBCOMMANDS:
        SUBCOMMANDS[subcommand][0](rest)
        return
    lines = ["usage: minigpt tokenizer {train,compare} ...", ""]
    lines += [f"  {name:<8} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "minigpt tokenizer SUBCOMMAND --help shows its options."]
    if subcommand in ("-h", "--help"):
        print("\n".join(lines))
        return
    given = repr(subcommand) if subcommand else "nothing"
    raise MinigptError(f"minigpt tokenizer takes train or compare, got {given}; see minigpt tokenizer --help")
