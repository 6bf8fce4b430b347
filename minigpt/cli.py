"""The `minigpt` command: LightningCLI's fit/validate/test, plus `generate` and `export`.

`fit --ckpt_path X` resumes the run that wrote X: weights, optimizer, step, schedule and the
model hyperparameters stored in X. A config with `finetune: true` makes the same flag a starting
point instead: X becomes `model.init_from` (weights and tokenizer only), the run starts at step 0
with a fresh optimizer and schedule, and every value comes from the config.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from minigpt.callbacks import ThroughputLogger
from minigpt.checkpoint import load_checkpoint, read_checkpoint
from minigpt.data.text import TextDataModule
from minigpt.errors import MinigptError
from minigpt.generation import check_sampling, generate_text
from minigpt.hf_gpt2 import REQUIRED_FILES, export_gpt2
from minigpt.module import LanguageModel


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
        """The data module encodes with the tokenizer of the weights the run starts from."""
        config = self.config[self.config.subcommand]
        data_args = config.get("data") and config.data.get("init_args")
        if data_args is None or "tokenizer_from" not in data_args or data_args.tokenizer_from is not None:
            return
        ckpt_path = config.get("ckpt_path")
        if config.model.get("init_from"):
            data_args.tokenizer_from = config.model.init_from
        elif ckpt_path and ckpt_path not in ("last", "best", "hpc"):
            data_args.tokenizer_from = ckpt_path


def run_lightning_cli(args: Sequence[str] | None) -> None:
    """LightningCLI over `args`, or over sys.argv when None (it refuses to be given both)."""
    # Batches are built in-process by design (a numpy gather per step); more workers only add IPC.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning 2.6 on torch 2.13 warns about its own pytree use on every run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    MinigptCLI(
        LanguageModel,
        TextDataModule,
        subclass_mode_data=True,
        trainer_defaults={"callbacks": [ThroughputLogger()]},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "description": "Train small GPTs. Sampling: minigpt generate --help; GPT-2 export: minigpt export --help"
        },
        args=None if args is None else list(args),
    )


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


COMMANDS = {"generate": run_generate, "export": run_export}


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
