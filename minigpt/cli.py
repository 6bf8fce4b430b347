"""The `minigpt` command: LightningCLI's fit/validate/test, plus `generate`, `chat`, `tokenizer`
and `export`.

`fit --ckpt_path X` resumes the run that wrote X: weights, optimizer, step, schedule and the
model hyperparameters stored in X. A config with `finetune: true` makes the same flag a starting
point instead: X becomes `model.init_from` (weights and tokenizer only), the run starts at step 0
with a fresh optimizer and schedule, and every value comes from the config.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from minigpt.atomic_io import AtomicCheckpointIO
from minigpt.callbacks import GracefulInterrupt, ThroughputLogger
from minigpt.checkpoint import Checkpoint, load_checkpoint, read_checkpoint
from minigpt.data.prompts import style_by_name
from minigpt.data.sources import decode_text
from minigpt.errors import MinigptError
from minigpt.generation import Sampling
from minigpt.hf_gpt2 import REQUIRED_FILES, export_gpt2
from minigpt.module import LanguageModel
from minigpt.pretrained import check_source
from minigpt.sweep.command import run_sweep
from minigpt.tokenizer_commands import run_tokenizer


def default_precision() -> str:
    """fp32 on CPU (bf16 autocast is far slower there), bf16 where the GPU has it, else fp16."""
    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


class MinigptCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.block_size", "model.block_size", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-step{step}-val{val/loss:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                "trainer.precision": default_precision(),
            }
        )
        parser.add_argument(
            "--finetune",
            type=bool,
            default=False,
            help="Treat --ckpt_path as starting weights (model.init_from): step 0, fresh optimizer, "
            "the config's hyperparameters. Without it, --ckpt_path resumes the run exactly.",
        )

    def instantiate_classes(self) -> None:
        # jsonargparse wraps errors raised while building a class in its own ValueError;
        # a MinigptError underneath is the message meant for the user.
        try:
            super().instantiate_classes()
        except ValueError as error:
            cause = find_cause(error, MinigptError)
            if cause is None:
                raise
            raise cause from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self.config_init.get(self.subcommand, self.config_init).get("trainer", {})
        if not trainer_config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Sequence[str] | None) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = subcommand and self.config[subcommand].get("ckpt_path")
        # Checked before LightningCLI reads the file's hyperparameters, which would fail with a
        # traceback on a missing or foreign file.
        if ckpt_path and ckpt_path not in ("last", "best", "hpc"):
            read_checkpoint(ckpt_path)

    def _parse_ckpt_path(self) -> None:
        """Resume (LightningCLI's merge of the checkpoint's hyperparameters), or start a fine-tune."""
        subcommand = self.config.get("subcommand")
        config = subcommand and self.config[subcommand]
        if not config or not config.get("finetune"):
            super()._parse_ckpt_path()
            return
        ckpt_path, init_from = config.get("ckpt_path"), config.model.get("init_from")
        if ckpt_path and init_from:
            raise MinigptError(
                f"finetune: true with both --ckpt_path {ckpt_path} and model.init_from {init_from}; give one of them"
            )
        if not (ckpt_path or init_from):
            raise MinigptError("finetune: true needs starting weights: pass --ckpt_path or set model.init_from")
        if ckpt_path:
            # Lightning would restore the optimizer, loops and step from a ckpt_path given to fit,
            # and LightningCLI would merge its hyperparameters over this config: neither happens.
            config.model.init_from = ckpt_path
            config.ckpt_path = None

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        root = config.get("trainer", {}).get("default_root_dir") or os.getcwd()
        check_writable(Path(root), "trainer.default_root_dir")
        # The data module encodes with the tokenizer of the weights the run starts from.
        data_args = config.get("data") and config.data.get("init_args")
        if data_args is None or "tokenizer_from" not in data_args or data_args.tokenizer_from is not None:
            return
        ckpt_path = config.get("ckpt_path")
        if config.model.get("init_from"):
            # Checked here so that a wrong path is reported under the key the user set.
            check_source(config.model.init_from)
            data_args.tokenizer_from = config.model.init_from
        elif ckpt_path and ckpt_path not in ("last", "best", "hpc"):
            data_args.tokenizer_from = ckpt_path


def find_cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    while error is not None and not isinstance(error, kind):
        error = error.__cause__ or error.__context__
    return error


def check_writable(folder: Path, key: str) -> None:
    """Fail before training, not at the first checkpoint, when logs cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise MinigptError(
            f"{key}: cannot write run output to {folder} ({error.strerror or error}); "
            "pass a writable folder with --trainer.default_root_dir"
        ) from None


def run_lightning_cli(args: Sequence[str] | None, *, extra_callbacks: Sequence[Callback] | None = None) -> LightningCLI:
    """LightningCLI over `args`, or over sys.argv when None (it refuses to be given both).

    `extra_callbacks` join the trainer's callbacks without appearing in the saved config (the
    sweep's pruning callback). Returns the CLI, whose `trainer` holds the finished run.
    """
    # Batches are built in-process by design (a numpy gather per step); more workers only add IPC.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning 2.6 on torch 2.13 warns about its own pytree use on every run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    interrupt = GracefulInterrupt()
    cli = MinigptCLI(
        LanguageModel,
        # Any data module with `vocab_size` and `block_size`: text windows or instruction records.
        LightningDataModule,
        subclass_mode_data=True,
        trainer_defaults={"callbacks": [ThroughputLogger(), interrupt, *(extra_callbacks or [])]},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "description": "Train small GPTs. Also: minigpt generate | chat | tokenizer | export | sweep --help"
        },
        args=None if args is None else list(args),
    )
    if interrupt.signal is not None:
        if interrupt.checkpoint_path is not None and cli.trainer.is_global_zero:
            resume = " ".join(sys.argv[1:] if args is None else args)
            print(
                f"minigpt: stopped by {interrupt.signal.name} at step {cli.trainer.global_step}; "
                f"checkpoint saved to {interrupt.checkpoint_path}\n"
                f"minigpt: resume with: minigpt {resume} --ckpt_path {interrupt.checkpoint_path}",
                file=sys.stderr,
            )
        sys.exit(128 + interrupt.signal)
    return cli


def add_sampling_arguments(parser: argparse.ArgumentParser, max_new_tokens: int, temperature: float) -> None:
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by minigpt fit")
    parser.add_argument("--max_new_tokens", type=int, default=max_new_tokens)
    parser.add_argument("--temperature", type=float, default=temperature, help="0 picks the most likely token")
    parser.add_argument("--top_k", type=int, default=200, help="sample among the k most likely tokens")
    parser.add_argument("--top_p", type=float, default=None, help="sample among the most likely tokens worth p")
    parser.add_argument(
        "--repetition_penalty", type=float, default=1.0, help="> 1 makes tokens already seen less likely"
    )
    parser.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="end the output before TEXT (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=None, help="same seed, same text")
    parser.add_argument(
        "--prompt_style",
        default=None,
        help="wrap prompts in this style (alpaca, alpaca-short, plain); default: the checkpoint's, 'none' turns it off",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def open_checkpoint(options: argparse.Namespace) -> tuple[Checkpoint, Sampling]:
    """The checkpoint, with --prompt_style applied, and the sampling settings, all checked."""
    sampling = Sampling(options.temperature, options.top_k, options.top_p, options.repetition_penalty)
    if options.max_new_tokens < 0:
        raise MinigptError(f"--max_new_tokens must be 0 or more, got {options.max_new_tokens}")
    checkpoint = load_checkpoint(options.ckpt_path, device=options.device)
    if options.prompt_style == "none":
        checkpoint.prompt_style = None
    elif options.prompt_style is not None:
        style_by_name(options.prompt_style, key="--prompt_style")
        checkpoint.prompt_style = options.prompt_style
    return checkpoint, sampling


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
    add_sampling_arguments(parser, max_new_tokens=500, temperature=0.8)
    return parser


def run_generate(args: Sequence[str]) -> None:
    options = generate_parser().parse_args(args)
    checkpoint, sampling = open_checkpoint(options)
    prompt = read_prompt(options)
    # A plain language model continues the prompt, so it is shown; a wrapped one is not.
    echo = "" if checkpoint.style else prompt
    with warnings_as_notes():
        try:
            if options.num_samples == 1:
                print(echo, end="", flush=True)
                for piece in checkpoint.stream(prompt, options.max_new_tokens, sampling, options.stop, options.seed):
                    print(piece, end="", flush=True)
                print()
                return
            samples = checkpoint.generate(
                prompt, options.max_new_tokens, sampling, options.stop, options.num_samples, options.seed
            )
        except MinigptError as error:
            raise MinigptError(f"--prompt: {error}") from None
    print("\n---\n".join(echo + sample for sample in samples))


def chat_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt chat",
        description="Answer prompts read from stdin, one per line (type or pipe them); each is answered on its own.",
    )
    add_sampling_arguments(parser, max_new_tokens=256, temperature=0.7)
    return parser


def run_chat(args: Sequence[str]) -> None:
    options = chat_parser().parse_args(args)
    checkpoint, sampling = open_checkpoint(options)
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
                for piece in checkpoint.stream(prompt, options.max_new_tokens, sampling, options.stop, options.seed):
                    print(piece, end="", flush=True)
                print(flush=True)
            except MinigptError as error:
                # One bad line (say, an unknown character) should not end the conversation.
                print(f"minigpt: error: {error}", file=sys.stderr)


def run_export(args: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="minigpt export",
        description="Write a checkpoint as a Hugging Face GPT-2 directory (config.json, model.safetensors, "
        "tokenizer.json) that transformers' GPT2LMHeadModel.from_pretrained loads.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by minigpt fit")
    parser.add_argument("--out", required=True, help="directory to write (created if missing)")
    options = parser.parse_args(args)
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise MinigptError(f"--out: {out} is a file; pass a directory")
    checkpoint = load_checkpoint(options.ckpt_path)
    export_gpt2(checkpoint.model, checkpoint.tokenizer, out)
    print(f"wrote {out}/ ({', '.join(REQUIRED_FILES)})")


COMMANDS = {
    "generate": run_generate,
    "chat": run_chat,
    "tokenizer": run_tokenizer,
    "export": run_export,
    "sweep": run_sweep,
}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            COMMANDS[args[0]](args[1:])
        else:
            run_lightning_cli(None if argv is None else args)
    except MinigptError as error:
        print(f"minigpt: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("minigpt: interrupted", file=sys.stderr)
        sys.exit(130)
