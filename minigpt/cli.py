"""The `minigpt` command: a table of commands, each run by its module in minigpt.commands.

Only the module of the command given is imported, so `minigpt --help` and the commands that need
neither torch nor Lightning (`tokenizer train`, every argparse `--help`) start at once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from minigpt.errors import MinigptError


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


COMMANDS = {
    "fit": Command(
        "minigpt.commands.train", "train a model; --ckpt_path resumes a run or, with finetune: true, starts from it"
    ),
    "validate": Command(
        "minigpt.commands.train", "loss, perplexity and bits/char of a checkpoint on the validation split"
    ),
    "test": Command("minigpt.commands.train", "the same on the test split"),
    "predict": Command("minigpt.commands.train", "complete a file of prompts in batches, answers to JSONL"),
    "generate": Command("minigpt.commands.generate", "sample text from a checkpoint, streamed"),
    "chat": Command("minigpt.commands.generate", "answer prompts read from stdin, one per line"),
    "export": Command("minigpt.commands.export", "write a checkpoint as a Hugging Face model directory"),
    "tokenizer": Command("minigpt.commands.tokenizer", "train a tokenizer, or compare tokenizers on a corpus"),
    "sweep": Command("minigpt.commands.sweep", "search fit settings with Optuna: pruned, resumable, shared by workers"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: minigpt {{{','.join(COMMANDS)}}} ...", "", "Train small GPT language models end to end.", ""]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "minigpt COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    # LightningCLI also takes options before its subcommand (`minigpt --config X fit`).
    name = args[0] if args[0] in COMMANDS else "fit" if args[0].startswith("-") else None
    if name is None:
        print(f"{usage()}\n\nminigpt: error: unknown command {args[0]!r}", file=sys.stderr)
        sys.exit(2)
    try:
        importlib.import_module(COMMANDS[name].module).run(args)
    except MinigptError as error:
        print(f"minigpt: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("minigpt: interrupted", file=sys.stderr)
        sys.exit(130)
