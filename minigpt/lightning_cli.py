"""The Lightning wiring: LightningCLI over LanguageModel and any minigpt data module, and the one
entry that runs it (`run_lightning_cli`), used by `minigpt fit | validate | test | predict` and by
every sweep trial.

`fit --ckpt_path X` resumes the run that wrote X: weights, optimizer, step, schedule and the
model hyperparameters stored in X (merged over the config). A config with `finetune: true`
makes the same flag a starting point instead (`start_from_checkpoint`).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback

from minigpt.atomic_io import AtomicCheckpointIO
from minigpt.callbacks.cpu_threads import CpuThreads
from minigpt.callbacks.evaluation import TextSample
from minigpt.callbacks.hparams import RunLogger, RunSettings
from minigpt.callbacks.interrupt import GracefulInterrupt
from minigpt.callbacks.metrics import OptimizationLogger, ThroughputLogger
from minigpt.callbacks.predictions import PredictionsFile
from minigpt.callbacks.progress_bar import StepProgressBar
from minigpt.callbacks.random_state import RandomState
from minigpt.callbacks.run_folder import RemoveEmptyRun
from minigpt.checkpoint import METADATA_KEY, read_checkpoint
from minigpt.data import __all__ as DATA_MODULE_NAMES
from minigpt.errors import MinigptError, first_line
from minigpt.files import check_writable, remove_stale_partials
from minigpt.huggingface.directory import REQUIRED_FILES, check_model_dir
from minigpt.huggingface.hub import FILE_SUFFIXES, HUB_NAME, check_source, resolve_source, source_exists
from minigpt.model import CONFIG_KEY, GPTConfig
from minigpt.module import LanguageModel
from minigpt.tokenizers import TokenizerSpec

DATA_MODULES = [f"minigpt.data.{name}" for name in DATA_MODULE_NAMES]
TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
# Help for a settings block nested in a data module, which LightningCLI advertises but cannot show.
NESTED_HELP = {"--data.tokenizer.help": ("data.tokenizer", TokenizerSpec)}
# Values of --ckpt_path that Lightning resolves itself rather than reading a file.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")
GPT_FIELDS = tuple(field.name for field in fields(GPTConfig))
# Keys of earlier minigpt versions, and where their values go now.
MOVED_KEYS = {
    **{f"model.{name}": f"{CONFIG_KEY}.{name}" for name in GPT_FIELDS},
    "model.preset": f"{CONFIG_KEY} (write the preset's values there, e.g. n_layer: 6, n_head: 6, n_embd: 384)",
}
SUBCOMMANDS = ("fit", "validate", "test", "predict")
INIT_FROM = "model.init_from"
# Warnings Lightning gives on every minigpt run that tell a user nothing to act on: the one list.
KNOWN_WARNINGS = (
    # Batches are built in-process by design (a numpy gather per step); more workers only add IPC.
    r".*does not have many workers.*",
    # minigpt hands LightningCLI its own command line (the words after `minigpt`) as `args`.
    r"LightningCLI's args parameter is intended.*",
    # Lightning 2.6 on torch 2.13 warns about its own pytree use on every run.
    r".*isinstance\(treespec, LeafSpec\).*",
)


def ignore_known_warnings() -> None:
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def default_precision() -> str:
    """fp32 on CPU, bf16 where the GPU has it, else fp16. bf16-mixed pays on CPUs with bf16 units
    (AMX) and is slow on those without, so a CPU config opts in (configs/speedrun.yaml)."""
    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def is_model_directory_or_hub_name(source: str) -> bool:
    path = Path(source).expanduser()
    return path.is_dir() or (not path.exists() and bool(HUB_NAME.match(source)) and path.suffix not in FILE_SUFFIXES)


def check_init_from(source: str, key: str) -> None:
    """A model.init_from that exists and holds what a start needs, reported under `key` (the one
    the user set): a model directory's files (the tokenizer among them) or a readable minigpt
    checkpoint; a hub name is fetched into the Hugging Face cache here."""
    check_source(source, key)
    path = resolve_source(source, key, REQUIRED_FILES)
    if path.is_dir():
        check_model_dir(path, key)
    else:
        read_checkpoint(path, key)


def start_from_checkpoint(config: Any) -> None:
    """`finetune: true`: the checkpoint given as --ckpt_path becomes `model.init_from`.

    Two things `fit --ckpt_path` would otherwise do must not happen to a fine-tune: merging the
    checkpoint's hyperparameters over the config (`_parse_ckpt_path`, only while `ckpt_path` is
    set), and Lightning restoring the optimizer, loops and step (it does so when `ckpt_path`
    reaches `Trainer.fit`). Clearing `ckpt_path` here stops both: the run starts at step 0 with
    a fresh optimizer and schedule, and every value is the config's.
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


def resumable_hyperparameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model hyperparameters a checkpoint resumes with, in today's keys: checkpoints written
    before model.gpt held the architecture as flat model.* values (and a preset)."""
    hyperparameters = dict(checkpoint.get("hyper_parameters") or {})
    hyperparameters.pop("_instantiator", None)
    hyperparameters.pop("preset", None)
    flat = {name: hyperparameters.pop(name) for name in GPT_FIELDS if name in hyperparameters}
    if flat and not isinstance(hyperparameters.get("gpt"), dict):
        hyperparameters["gpt"] = flat
    return hyperparameters


class MinigptCLI(LightningCLI):
    # The --ckpt_path a fine-tune starts from, which becomes model.init_from.
    _finetune_from: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._subcommand = subcommand_of(kwargs.get("args") or ())
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        # Only the subcommand being run gets a parser: jsonargparse reads every class signature
        # for each one, ~0.1 s apiece, at the start of every run.
        return {self._subcommand: LightningCLI.subcommands()[self._subcommand]}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(TextSample, "sample")
        parser.add_lightning_class_args(CpuThreads, "cpu")
        parser.add_lightning_class_args(PredictionsFile, "predictions")
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

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as error:
            raise MinigptError(
                one_line_parse_error(str(error), self._subcommand, self._subcommand_parsers[self._subcommand])
            ) from None
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand or "", None)
        if not config:
            return
        ckpt_path = config.get("ckpt_path")
        if config.get("finetune") or (subcommand != "fit" and ckpt_path and is_model_directory_or_hub_name(ckpt_path)):
            # A fine-tune starts from the weights; evaluating a Hugging Face model is evaluating
            # the weights a run would start from.
            config.finetune = True
            self._finetune_from = ckpt_path
            start_from_checkpoint(config)
        elif ckpt_path and ckpt_path not in LIGHTNING_CKPT_NAMES:
            # The interrupted run that wrote it may have left half a checkpoint write behind
            # (in a folder of its own, maybe outside this run's root).
            remove_stale_partials(Path(ckpt_path).parent)

    def _parse_ckpt_path(self) -> None:
        """A resumed run takes the model hyperparameters stored in its checkpoint (LightningCLI's
        rule), read here with one-line errors for a missing or foreign file, and in today's keys."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in LIGHTNING_CKPT_NAMES:
            return
        checkpoint = read_checkpoint(ckpt_path)
        lora = checkpoint[METADATA_KEY].get("lora")
        if lora is not None and not source_exists(lora["base"]):
            raise MinigptError(
                f"--ckpt_path: {ckpt_path} holds LoRA adapters for the base weights {lora['base']}, which are gone; "
                f"put them back at {lora['base']} to resume the run or to use the adapters"
            )
        hyperparameters = resumable_hyperparameters(checkpoint)
        if not hyperparameters:
            return
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hyperparameters}}, self.config)
        except ArgumentError as error:
            raise MinigptError(
                f"--ckpt_path: {ckpt_path} holds model settings this minigpt cannot read ({first_line(error)}); "
                "resume it with the minigpt version that wrote it, or fine-tune from it (finetune: true)"
            ) from None

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
        except MisconfigurationException as error:
            # The Trainer refusing a setting (trainer.max_steps: -5): Lightning's own words, one line.
            raise MinigptError(f"trainer: {' '.join(str(error).split())}") from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self.config_init.get(self.subcommand, self.config_init).get("trainer", {})
        if not trainer_config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        if self.subcommand == "predict":
            kwargs["logger"] = False  # answers go to predictions.path; no run folder
        elif trainer_config.get("logger") in (None, True):
            root = trainer_config.get("default_root_dir") or os.getcwd()
            kwargs["logger"] = RunLogger(save_dir=root, name="lightning_logs")
        callbacks = [*(trainer_config.get("callbacks") or []), RunSettings()]
        if trainer_config.get("enable_progress_bar") is not False:
            callbacks.append(StepProgressBar())
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in LIGHTNING_CKPT_NAMES and isinstance(self.model, LanguageModel):
            self.model.resumes_from = ckpt_path
        super()._run_subcommand(subcommand)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        root = config.get("trainer", {}).get("default_root_dir") or os.getcwd()
        check_writable(Path(root), "trainer.default_root_dir")
        # Checkpoint writes that a kill interrupted in earlier runs: nobody will finish them.
        for folder in Path(root).glob("lightning_logs/version_*/checkpoints"):
            remove_stale_partials(folder)
        init_from = config.model.get("init_from")
        if init_from:
            # Checked (and a hub name fetched into the Hugging Face cache) here, so that a wrong
            # path or a failed download is reported under the key the user set.
            key = "--ckpt_path" if config.get("finetune") and init_from == self._finetune_from else INIT_FROM
            check_init_from(init_from, key)
        # The data module encodes with the tokenizer of the weights the run starts from.
        data_args = config.get("data") and config.data.get("init_args")
        if data_args is None or "tokenizer_from" not in data_args or data_args.tokenizer_from is not None:
            return
        ckpt_path = config.get("ckpt_path")
        if init_from:
            data_args.tokenizer_from = init_from
        elif ckpt_path and ckpt_path not in LIGHTNING_CKPT_NAMES:
            data_args.tokenizer_from = ckpt_path


class _ParserOnly(MinigptCLI):
    """Builds the parsers and stops before parsing anything (see `fit_parser`)."""

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        raise _ParsersReady(self._subcommand_parsers)


class _ParsersReady(Exception):
    def __init__(self, parsers: dict[str, LightningArgumentParser]) -> None:
        super().__init__("parsers built")
        self.parsers = parsers


def fit_parser() -> LightningArgumentParser:
    """The parser of `minigpt fit`, the very one a run uses, without parsing or running anything:
    it knows every key of the fit config and its type (the sweep checks its keys with it)."""
    try:
        _ParserOnly(**cli_arguments(()))
    except _ParsersReady as ready:
        return ready.parsers["fit"]
    raise AssertionError("LightningCLI parsed arguments without calling parse_arguments")


def moved_key_message(key: str) -> str | None:
    """A one-line pointer for a key of an earlier minigpt version, or None."""
    new = MOVED_KEYS.get(key)
    return None if new is None else f"{key} moved to {new}"


def one_line_parse_error(message: str, subcommand: str, parser: ArgumentParser) -> str:
    """LightningCLI's parsing error (often many lines after a long usage) as one line that names
    the key or file and what to do."""
    usage = f"`minigpt {subcommand} --help` lists the options"
    keys = [action.dest for action in parser._actions if action.dest and "." in action.dest]

    def suggestion(key: str) -> str:
        close = difflib.get_close_matches(key, keys, n=1)
        return f" (did you mean {close[0]}?)" if close else ""

    def unknown(key: str, where: str) -> str:
        return moved_key_message(key) or f"unknown {where}{key}{suggestion(key)}; {usage}"

    if match := re.search(r"unrecognized arguments: --?(\S+)", message):
        return unknown(match.group(1).split("=")[0], "option --")
    if match := re.search(r"Group '([^']+)' does not accept option '([^']+)'", message):
        return unknown(f"{match.group(1)}.{match.group(2)}", "key ") + " (in the config)"
    if match := re.search(r"does not accept option '([^']+)'", message):
        return unknown(match.group(1), "key ") + " (in the config)"
    if "the following arguments are required" in message and f"{subcommand}.data" in message:
        return (
            f"minigpt {subcommand} needs a config: pass --config FILE, e.g. --config configs/pretrain-small.yaml "
            "(or --data CLASS with the model options)"
        )
    if match := re.search(r'Parser key "config": File does not exist: (.+)', message):
        return (
            f"--config: {match.group(1).strip()} does not exist; pass a YAML file such as configs/pretrain-small.yaml"
        )
    if match := re.search(r'Parser key "([^"]+)":', message):
        key = match.group(1)
        given = re.search(r"Given value: (.+)", message)
        nested = given and re.match(r"NestedArg\(key='([^']+)'", given.group(1))
        if nested and key == "data":
            return (
                f"--data: no option {nested.group(1)!r} in the data module or its tokenizer; "
                "`minigpt fit --data.help CLASS` lists them"
            )
        if given and key == "data":
            return f"--data: {given.group(1).strip()} is not a data module; choose one of {', '.join(DATA_MODULES)}"
        if given:
            return f"{key}: {given.group(1).strip()} is not a valid value; {usage}"
        if expected := re.search(r"Expected an? <class '(\w+)'>\. Got value: (.+)", message):
            return f"{key}: expected {TYPE_NAMES.get(expected.group(1), expected.group(1))}, got {expected.group(2)}"
        detail = " ".join(message[match.end() :].split())
        return f"{key}: {detail}"
    return f"{' '.join(message.split())}; {usage}"


def check_config_files(args: Sequence[str]) -> None:
    """Each --config file exists and is YAML, checked here so that the error names the file."""
    for index, arg in enumerate(args):
        if arg in ("-c", "--config") and index + 1 < len(args):
            name = args[index + 1]
        elif arg.startswith("--config="):
            name = arg.split("=", 1)[1]
        else:
            continue
        path = Path(name)
        if not path.is_file():
            raise MinigptError(f"--config: {path} does not exist; pass a YAML file such as configs/pretrain-small.yaml")
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or first_line(error)
            raise MinigptError(f"--config: {path} is not valid YAML ({problem}{where}); fix that line") from None


def find_cause(error: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    while error is not None and not isinstance(error, kind):
        error = error.__cause__ or error.__context__
    return error


def subcommand_of(args: Sequence[str]) -> str:
    """The LightningCLI subcommand a command line runs (`fit` when it names none)."""
    return args[0] if args and args[0] in SUBCOMMANDS else "fit"


def cli_arguments(args: Sequence[str], callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """MinigptCLI's arguments for the command line `args`, with `callbacks` in every run."""
    return dict(
        model_class=LanguageModel,
        # Any data module with `vocab_size` and `block_size`: text windows or instruction records.
        datamodule_class=LightningDataModule,
        subclass_mode_data=True,
        trainer_defaults={"callbacks": list(callbacks)},
        save_config_callback=None if args and args[0] == "predict" else SaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        # Parsing errors come back as exceptions, to be told in one line (`one_line_parse_error`).
        parser_kwargs={
            "description": "Train small GPTs. `minigpt --help` lists the other commands.",
            "exit_on_error": False,
            subcommand_of(args): {"exit_on_error": False},
        },
        args=list(args),
    )


def run_lightning_cli(
    args: Sequence[str], *, extra_callbacks: Sequence[Callback] = (), resume_hint: bool = True
) -> LightningCLI:
    """LightningCLI over `args` (`fit --config ...`), with minigpt's callbacks and `extra_callbacks`.

    A run stopped by a signal says where its checkpoint is, and (with `resume_hint`) the command
    that resumes it; a caller with its own way to resume (a sweep) turns that off.
    """
    ignore_known_warnings()
    for flag, (key, settings) in NESTED_HELP.items():
        if flag in args:
            parser = ArgumentParser(prog=f"minigpt fit --{key}", description=(settings.__doc__ or "").splitlines()[0])
            parser.add_class_arguments(settings, key)
            parser.print_help()
            sys.exit(0)
    check_config_files(args)
    chosen = any(arg in ("--data", "--config", "-c") or arg.startswith(("--data=", "--config=")) for arg in args)
    if args and args[0] == "predict" and not chosen:
        args = ["predict", "--data=minigpt.data.Prompts", *args[1:]]
    interrupt = GracefulInterrupt()
    callbacks = [ThroughputLogger(), OptimizationLogger(), RandomState(), RemoveEmptyRun(), interrupt]
    cli = MinigptCLI(**cli_arguments(args, [*callbacks, *extra_callbacks]))
    if interrupt.signal is not None:
        if interrupt.checkpoint_path is not None and cli.trainer.is_global_zero:
            print(
                f"minigpt: stopped by {interrupt.signal.name} at step {cli.trainer.global_step}; "
                f"checkpoint saved to {interrupt.checkpoint_path}",
                file=sys.stderr,
            )
            if resume_hint:
                resume = f"minigpt {' '.join(args)} --ckpt_path {interrupt.checkpoint_path}"
                print(f"minigpt: resume with: {resume}", file=sys.stderr)
        sys.exit(128 + interrupt.signal)
    return cli
