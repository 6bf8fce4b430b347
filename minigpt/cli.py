"""The `minigpt` command: a table of commands, each run by a function in minigpt.commands.

A command's options are parsed first, by a parser from minigpt.commands.arguments (torch-free),
and only then is its runner's module imported: `minigpt --help`, every `--help` and every usage
error answer at once, and a runner's module imports what it needs at its top. The LightningCLI
commands (fit, validate, test, predict) parse their own arguments.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from minigpt.cpu_registry import PROCESS_ENTRY
from minigpt.errors import MinigptError

ARGUMENTS = "minigpt.commands.arguments"


@dataclass(frozen=True)
class Command:
    summary: str
    runner: str  # "module:function", given the parsed options (or, with no parser, the raw arguments)
    parser: str | None = None  # the name of a parser in minigpt.commands.arguments


@dataclass(frozen=True)
class Group:
    """A command made of subcommands (`minigpt tokenizer train`)."""

    summary: str
    commands: dict[str, Command] = field(default_factory=dict)


LIGHTNING = "minigpt.lightning_cli:run_lightning_cli"
SWEEP = "minigpt.commands.sweep:run"
# Commands whose runs choose their CPU threads once, as they start (minigpt.threads).
TRAINING_RUNNERS = (LIGHTNING, SWEEP)
COMMANDS: dict[str, Command | Group] = {
    "fit": Command("train a model; --ckpt_path resumes a run or, with finetune: true, starts from it", LIGHTNING),
    "validate": Command("loss, perplexity and bits/char of a checkpoint on the validation split", LIGHTNING),
    "test": Command("the same on the test split", LIGHTNING),
    "predict": Command("complete a file of prompts in batches, answers to JSONL", LIGHTNING),
    "generate": Command(
        "sample text from a checkpoint, streamed", "minigpt.commands.generate:run_generate", "generate_parser"
    ),
    "chat": Command(
        "answer prompts read from stdin, one per line", "minigpt.commands.generate:run_chat", "chat_parser"
    ),
    "export": Command(
        "write a checkpoint as a Hugging Face model directory", "minigpt.commands.export:run", "export_parser"
    ),
    "tokenizer": Group(
        "train a tokenizer, or compare tokenizers on a corpus",
        {
            "train": Command(
                "train a tokenizer on a text file and save it",
                "minigpt.commands.tokenizer:run_train",
                "tokenizer_train_parser",
            ),
            "compare": Command(
                "train the same small GPT with several tokenizers and rank them",
                "minigpt.commands.tokenizer_compare:run_compare",
                "tokenizer_compare_parser",
            ),
        },
    ),
    "sweep": Command(
        "search fit settings with Optuna: pruned, resumable, shared by workers",
        SWEEP,
        "sweep_parser",
    ),
    "serve": Command(
        "serve a checkpoint with OpenAI's API, batching concurrent requests, and a chat page",
        "minigpt.commands.serve:run",
        "serve_parser",
    ),
}


def load(name: str) -> Callable[..., Any]:
    """The function `module:function` names."""
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


def group_command(name: str, group: Group, args: list[str]) -> tuple[Command, list[str]]:
    """The subcommand `args` name, and the arguments after it."""
    subcommand = args[0] if args else None
    if subcommand in group.commands:
        return group.commands[subcommand], args[1:]
    names = " or ".join(group.commands)
    if subcommand in ("-h", "--help"):
        width = max(map(len, group.commands))
        lines = [f"usage: minigpt {name} {{{','.join(group.commands)}}} ...", ""]
        lines += [f"  {sub:<{width}}  {command.summary}" for sub, command in group.commands.items()]
        lines += ["", f"minigpt {name} SUBCOMMAND --help shows its options."]
        print("\n".join(lines))
        sys.exit(0)
    given = repr(subcommand) if subcommand else "nothing"
    raise MinigptError(f"minigpt {name} takes {names}, got {given}; see minigpt {name} --help")


def run(name: str, args: list[str]) -> None:
    """Parse the command's options, then import its runner and run it."""
    entry = COMMANDS[name]
    command, rest = group_command(name, entry, args[1:]) if isinstance(entry, Group) else (entry, args[1:])
    if command.runner in TRAINING_RUNNERS:
        PROCESS_ENTRY.join()  # before the slow imports: see minigpt.cpu_registry
    try:
        if command.parser is None:
            load(command.runner)(args)
            return
        options = load(f"{ARGUMENTS}:{command.parser}")().parse_args(rest)
        load(command.runner)(options)
    finally:
        PROCESS_ENTRY.leave()


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: minigpt {{{','.join(COMMANDS)}}} ...", "", "Train small GPT language models end to end.", ""]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "minigpt COMMAND --help shows a command's options; minigpt --version the installed version."]
    return "\n".join(lines)


def version() -> str:
    """The installed package's version, from its metadata (no torch import)."""
    try:
        return importlib.metadata.version("minigpt")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    if args[0] in ("-V", "--version"):
        print(f"minigpt {version()}")
        sys.exit(0)
    # LightningCLI also takes options before its subcommand (`minigpt --config X fit`).
    name = args[0] if args[0] in COMMANDS else "fit" if args[0].startswith("-") else None
    if name is None:
        print(f"{usage()}\n\nminigpt: error: unknown command {args[0]!r}", file=sys.stderr)
        sys.exit(2)
    try:
        run(name, args)
    except MinigptError as error:
        print(f"minigpt: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("minigpt: interrupted", file=sys.stderr)
        sys.exit(130)
