"""The `minigpt` command: LightningCLI's fit/validate/test, plus `generate` and `tokenizer`."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from minigpt.atomic_io import AtomicCheckpointIO
from minigpt.callbacks import GracefulInterrupt, ThroughputLogger
from minigpt.checkpoint import load_checkpoint, read_checkpoint
from minigpt.data.text import TextDataModule
from minigpt.errors import MinigptError
from minigpt.generation import check_sampling, generate_text
from minigpt.module import LanguageModel
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

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self.config_init.get(self.subcommand, self.config_init).get("trainer", {})
        if not trainer_config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        root = config.get("trainer", {}).get("default_root_dir") or os.getcwd()
        check_writable(Path(root), "trainer.default_root_dir")

    def parse_arguments(self, parser: LightningArgumentParser, args: Sequence[str] | None) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = subcommand and self.config[subcommand].get("ckpt_path")
        # Checked before LightningCLI reads the file's hyperparameters, which would fail with a
        # traceback on a missing or foreign file.
        if ckpt_path and ckpt_path not in ("last", "best", "hpc"):
            read_checkpoint(ckpt_path)


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


def run_lightning_cli(args: Sequence[str] | None) -> None:
    """LightningCLI over `args`, or over sys.argv when None (it refuses to be given both)."""
    # Batches are built in-process by design (a numpy gather per step); more workers only add IPC.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning 2.6 on torch 2.13 warns about its own pytree use on every run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    interrupt = GracefulInterrupt()
    cli = MinigptCLI(
        LanguageModel,
        TextDataModule,
        subclass_mode_data=True,
        trainer_defaults={"callbacks": [ThroughputLogger(), interrupt]},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "Train small GPTs. Sampling: minigpt generate --help"},
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


def generate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minigpt generate", description="Sample text from a checkpoint.")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by minigpt fit")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max_new_tokens", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 picks the most likely token")
    parser.add_argument("--top_k", type=int, default=200, help="sample among the k most likely tokens")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same text")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    return parser


def run_generate(args: Sequence[str]) -> None:
    options = generate_parser().parse_args(args)
    check_sampling(options.temperature, options.top_k)
    if options.max_new_tokens < 0:
        raise MinigptError(f"--max_new_tokens must be 0 or more, got {options.max_new_tokens}")
    checkpoint = load_checkpoint(options.ckpt_path, device=options.device)
    try:
        checkpoint.tokenizer.encode(options.prompt)
    except MinigptError as error:
        raise MinigptError(f"--prompt: {error}") from None
    text = generate_text(
        checkpoint.model,
        checkpoint.tokenizer,
        options.prompt,
        options.max_new_tokens,
        temperature=options.temperature,
        top_k=options.top_k,
        seed=options.seed,
    )
    print(options.prompt + text)


COMMANDS = {"generate": run_generate, "tokenizer": run_tokenizer}


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
