"""`minigpt generate` and `minigpt chat`: text from a checkpoint, streamed to stdout."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from minigpt.corpus.sources import decode_text
from minigpt.errors import MinigptError
from minigpt.prompts import PROMPT_STYLES, style_by_name
from minigpt.sampling import Sampling

if TYPE_CHECKING:
    from minigpt.checkpoint import Checkpoint


def add_sampling_arguments(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a checkpoint written by minigpt fit, a Hugging Face GPT-2 directory or a hub name",
    )
    parser.add_argument(
        "--max_new_tokens", type=int, default=max_new_tokens, help="most tokens to generate (default: %(default)s)"
    )
    for name, kind, default, help_text in Sampling.options():
        parser.add_argument(f"--{name}", type=kind, default=default, help=f"{help_text} (default: %(default)s)")
    parser.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="end the output before TEXT (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=None, help="same seed, same text (default: a random one)")
    parser.add_argument(
        "--prompt_style",
        default=None,
        help=f"wrap prompts in this style ({', '.join(PROMPT_STYLES)}); default: the checkpoint's, 'none' turns it off",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: %(default)s)")


def sampling_from(options: argparse.Namespace) -> Sampling:
    return Sampling(**{name: getattr(options, name) for name, *_ in Sampling.options()})


def open_checkpoint(options: argparse.Namespace) -> Checkpoint:
    """The checkpoint, with --prompt_style applied."""
    from minigpt.checkpoint import load_checkpoint

    if options.max_new_tokens < 0:
        raise MinigptError(f"--max_new_tokens must be 0 or more, got {options.max_new_tokens}")
    checkpoint = load_checkpoint(options.ckpt_path, device=options.device)
    if options.prompt_style == "none":
        checkpoint.prompt_style = None
    elif options.prompt_style is not None:
        style_by_name(options.prompt_style, key="--prompt_style")
        checkpoint.prompt_style = options.prompt_style
    return checkpoint


@contextlib.contextmanager
def warnings_as_notes() -> Iterator[None]:
    """Python warnings (a prompt cut to fit the context) as one `minigpt: warning:` line each."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *_: print(f"minigpt: warning: {message}", file=sys.stderr)
        yield


def read_prompt(options: argparse.Namespace) -> str:
    if options.prompt_file is None:
        return options.prompt
    if options.prompt_file == "-":
        return sys.stdin.read()
    path = Path(options.prompt_file)
    if not path.is_file():
        raise MinigptError(f"--prompt_file: {path} does not exist; pass a text file, or - to read stdin")
    return decode_text(path.read_bytes(), path, key="--prompt_file")


def generate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt generate",
        description="Sample text from a checkpoint, streamed to stdout. An instruction-tuned checkpoint wraps "
        "the prompt in its prompt style and prints the response only.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    source.add_argument("--prompt_file", default=None, metavar="FILE", help="read the prompt from FILE (- for stdin)")
    parser.add_argument("--num_samples", type=int, default=1, help="samples to draw, printed one after another")
    add_sampling_arguments(parser, max_new_tokens=500)
    return parser


def run_generate(options: argparse.Namespace) -> None:
    sampling = sampling_from(options)
    checkpoint = open_checkpoint(options)
    prompt = read_prompt(options)
    # A plain language model continues the prompt, so it is shown; a wrapped one is not.
    echo = "" if checkpoint.style else prompt
    settings = {"stop": options.stop, "seed": options.seed}
    with warnings_as_notes():
        try:
            if options.num_samples == 1:
                print(echo, end="", flush=True)
                for piece in checkpoint.stream(prompt, options.max_new_tokens, sampling, **settings):
                    print(piece, end="", flush=True)
                print()
                return
            samples = checkpoint.generate(
                prompt, options.max_new_tokens, sampling, num_samples=options.num_samples, **settings
            )
        except MinigptError as error:
            raise MinigptError(f"--prompt: {error}") from None
    print("\n---\n".join(echo + sample for sample in samples))


def chat_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt chat",
        description="Answer prompts read from stdin, one per line (type or pipe them); each is answered on its own.",
    )
    add_sampling_arguments(parser, max_new_tokens=256)
    return parser


def run_chat(options: argparse.Namespace) -> None:
    sampling = sampling_from(options)
    checkpoint = open_checkpoint(options)
    interactive = sys.stdin.isatty()
    if checkpoint.style is None:
        print(
            f"minigpt: note: {checkpoint.path} has no prompt style (it was not instruction-tuned), "
            "so chat continues each line as plain text",
            file=sys.stderr,
        )
    if interactive:
        print("minigpt chat: one prompt per line; Ctrl-D or /quit ends.", file=sys.stderr)
    with warnings_as_notes():
        while True:
            if interactive:
                print("> ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line or line.strip() == "/quit":
                return
            prompt = line.rstrip("\n")
            if not prompt.strip():
                continue
            try:
                for piece in checkpoint.stream(
                    prompt, options.max_new_tokens, sampling, stop=options.stop, seed=options.seed
                ):
                    print(piece, end="", flush=True)
                print(flush=True)
            except MinigptError as error:
                # One bad line (say, an unknown character) should not end the conversation.
                print(f"minigpt: error: {error}", file=sys.stderr)


def run(args: Sequence[str]) -> None:
    command, *rest = args
    parser, runner = (chat_parser, run_chat) if command == "chat" else (generate_parser, run_generate)
    options = parser().parse_args(rest)  # --help and usage errors end here, before torch loads
    from minigpt.threads import sharing_cores

    with sharing_cores():
        runner(options)
