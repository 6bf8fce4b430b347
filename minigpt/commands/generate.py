"""`minigpt generate` and `minigpt chat`: text from a checkpoint, streamed to stdout."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from minigpt.checkpoint import Checkpoint, load_checkpoint
from minigpt.corpus.sources import decode_text
from minigpt.errors import MinigptError
from minigpt.prompts import style_by_name
from minigpt.sampling import Sampling
from minigpt.threads import sharing_cores


def sampling_from(options: argparse.Namespace) -> Sampling:
    return Sampling(**{name: getattr(options, name) for name, *_ in Sampling.options()})


def open_checkpoint(options: argparse.Namespace) -> Checkpoint:
    """The checkpoint, with --prompt_style applied."""
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


def run_generate(options: argparse.Namespace) -> None:
    with sharing_cores():
        generate(options)


def generate(options: argparse.Namespace) -> None:
    sampling = sampling_from(options)
    checkpoint = open_checkpoint(options)
    prompt = read_prompt(options)
    # A plain language model continues the prompt, so it is shown; a wrapped one is not.
    echo = "" if checkpoint.style else prompt
    settings = {"stop": options.stop, "seed": options.seed}
    with warnings_as_notes():
        try:
            if options.num_samples == 1:
                # stream() checks and encodes the prompt at once: a refused prompt prints nothing.
                pieces = checkpoint.stream(prompt, options.max_new_tokens, sampling, **settings)
                print(echo, end="", flush=True)
                for piece in pieces:
                    print(piece, end="", flush=True)
                print()
                return
            samples = checkpoint.generate(
                prompt, options.max_new_tokens, sampling, num_samples=options.num_samples, **settings
            )
        except MinigptError as error:
            raise MinigptError(f"--prompt: {error}") from None
    print("\n---\n".join(echo + sample for sample in samples))


def run_chat(options: argparse.Namespace) -> None:
    with sharing_cores():
        chat(options)


def chat(options: argparse.Namespace) -> None:
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
