"""`minigpt fit | validate | test`: LightningCLI over LanguageModel and any minigpt data module.

`fit --ckpt_path X` resumes the run that wrote X: weights, optimizer, step, schedule and the
model hyperparameters stored in X (LightningCLI merges them over the config). A config with
`finetune: true` makes the same flag a starting point instead (`start_from_checkpoint`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from minigpt.atomic_io import AtomicCheckpointIO
from minigpt.callbacks import CpuThreads, GracefulInterrupt, OptimizationLogger, RandomState, ThroughputLogger
from minigpt.checkpoint import read_checkpoint
from minigpt.errors import MinigptError
from minigpt.evaluation import TextSample
from minigpt.huggingface.hub import FILE_SUFFIXES, HUB_NAME, check_source
from minigpt.module import LanguageModel

# Values of --ckpt_path that Lightning resolves itself rather than reading a file.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")


def default_precision() -> str:
    """fp32 on CPU (bf16 autocast is far slower there), bf16 where the GPU has it, else fp16."""
    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def is_model_directory_or_hub_name(source: str) -> bool:
    path = Path(source).expanduser()
    return path.is_dir() or (not path.exists() and bool(HUB_NAME.match(source)) and path.suffix not in FILE_SUFFIXES)


def start_from_checkpoint(config: Any) -> None:
    """`finetune: true`: the checkpoint given as --ckpt_path becomes `model.init_from`.

    Two things `fit --ckpt_path` would otherwise do must not happen to a fine-tune: LightningCLI
    merging the checkpoint's hyperparameters over the config (it does so after `parse_arguments`,
    and only while `ckpt_path` is set), and Lightning restoring the optimizer, loops and step (it
    does so when `ckpt_path` reaches `Trainer.fit`). Clearing `ckpt_path` here stops both: the
    run starts at step 0 with a fresh optimizer and schedule, and every value is the config's.
    `tests/test_finetune.py` pins both behaviours against Lightning upgrades.
    """
    ckpt_path, init_from = config.get("ckpt_path"), config.model.get("init_from")
    if ckpt_path and init_from:
        raise MinigptError(
            f"finetune: true with both --ckpt_path {ckpt_path} and model.init_from {init_from}; give one of them"
        )
    if not (ckpt_path or init_from):
        raise MinigptError("finetune: true needs starting weights: pass --ckpt_path or set model.init_from")
    if ckpt_path:
        config.model.init_from = ckpt_path
        config.ckpt_path = None


class MinigptCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.block_size", "model.block_size", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(TextSample, "sample")
        parser.add_lightning_class_args(CpuThreads, "cpu")
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
        config = self.config.get(subcommand or "", None)
        if not config:
            return
        ckpt_path = config.get("ckpt_path")
        if config.get("finetune") or (subcommand != "fit" and ckpt_path and is_model_directory_or_hub_name(ckpt_path)):
            # A fine-tune starts from the weights; evaluating a Hugging Face model is evaluating
            # the weights a run would start from.
            config.finetune = True
            start_from_checkpoint(config)
        elif ckpt_path and ckpt_path not in LIGHTNING_CKPT_NAMES:
            # Checked before LightningCLI reads the file's hyperparameters, which would fail with
            # a traceback on a missing or foreign file.
            read_checkpoint(ckpt_path)

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
            check_source(config.model.init_from, "model.init_from")
            data_args.tokenizer_from = config.model.init_from
        elif ckpt_path and ckpt_path not in LIGHTNING_CKPT_NAMES:
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


def run_lightning_cli(args: Sequence[str], *, extra_callbacks: Sequence[Callback] = ()) -> LightningCLI:
    """LightningCLI over `args` (`fit --config ...`), with minigpt's callbacks and `extra_callbacks`."""
    # Batches are built in-process by design (a numpy gather per step); more workers only add IPC.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # minigpt hands LightningCLI its own command line (the words after `minigpt`) as `args`.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended.*")
    # Lightning 2.6 on torch 2.13 warns about its own pytree use on every run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    interrupt = GracefulInterrupt()
    cli = MinigptCLI(
        LanguageModel,
        # Any data module with `vocab_size` and `block_size`: text windows or instruction records.
        LightningDataModule,
        subclass_mode_data=True,
        trainer_defaults={
            "callbacks": [ThroughputLogger(), OptimizationLogger(), RandomState(), interrupt, *extra_callbacks]
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "Train small GPTs. `minigpt --help` lists the other commands."},
        args=list(args),
    )
    if interrupt.signal is not None:
        if interrupt.checkpoint_path is not None and cli.trainer.is_global_zero:
            resume = " ".join(args)
            print(
                f"minigpt: stopped by {interrupt.signal.name} at step {cli.trainer.global_step}; "
                f"checkpoint saved to {interrupt.checkpoint_path}\n"
                f"minigpt: resume with: minigpt {resume} --ckpt_path {interrupt.checkpoint_path}",
                file=sys.stderr,
            )
        sys.exit(128 + interrupt.signal)
    return cli


def run(args: Sequence[str]) -> None:
    run_lightning_cli(args)
