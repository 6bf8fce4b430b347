"""The sweep's keys checked against its base fit config, with the `minigpt fit` parser itself.

`minigpt.lightning_cli.fit_parser()` is the parser every trial's run uses: a key is accepted
here if and only if a trial accepts it (`data.batch_size` as well as `data.init_args.batch_size`,
nested fields such as `model.gpt.n_layer` or `data.init_args.tokenizer.vocab_size`). Which keys
exist is read from what it parses the base config into; whether a value is valid, from parsing
it; whether a model can be built, from LanguageModel and GPTConfig themselves.
"""

from __future__ import annotations

import difflib
import itertools
from argparse import ArgumentError
from dataclasses import dataclass
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser

from minigpt.errors import MinigptError
from minigpt.lightning_cli import fit_parser, moved_key_message, one_line_parse_error
from minigpt.model import GPTConfig
from minigpt.module import LanguageModel
from minigpt.sweep.spec import SweepSpec, override_args

MAX_COMBINATIONS = 10_000


@dataclass(frozen=True)
class BaseConfig:
    """The base config with the fixed overrides, resolved as a trial resolves it."""

    config: dict[str, Any]
    max_steps: int


def base_args(spec: SweepSpec) -> list[str]:
    return ["--config", str(spec.base), *override_args(spec.fixed)]


def full_key(key: str) -> str:
    """`data.batch_size` is the parser's shorthand for `data.init_args.batch_size`."""
    if key.startswith("data.") and not key.startswith(("data.init_args.", "data.class_path")):
        return "data.init_args." + key.removeprefix("data.")
    return key


class FitParser:
    """The fit parser, parsing argument lists into configs or one-line refusals."""

    def __init__(self, parser: LightningArgumentParser | None = None) -> None:
        self.parser = parser or fit_parser()

    def parse(self, args: list[str]) -> Namespace:
        try:
            return self.parser.parse_args(args)
        except ArgumentError as error:
            raise MinigptError(one_line_parse_error(str(error), "fit", self.parser)) from None

    def refusal(self, args: list[str]) -> str | None:
        try:
            self.parse(args)
        except MinigptError as error:
            return str(error)
        return None

    def resolved(self, args: list[str]) -> dict[str, Any]:
        """The config as `minigpt fit ... --print_config` prints it."""
        return yaml.safe_load(self.parser.dump(self.parse(args)))


def known_keys(config: Namespace) -> set[str]:
    """Every dotted key of a parsed fit config, the groups as well as their fields."""
    keys: set[str] = set()
    for key, _ in config.items():
        parts = key.split(".")
        keys.update(".".join(parts[: end + 1]) for end in range(len(parts)))
    return keys


def check_against_base(spec: SweepSpec, parser: FitParser | None = None) -> BaseConfig:
    """Every fixed and searched key is a fit option, each end of each range is accepted, and some
    combination of the searched values builds a model."""
    parser = parser or FitParser()
    base = ["--config", str(spec.base)]
    refused = parser.refusal(base)
    if refused is not None:
        raise MinigptError(f"{spec.path}: base: {spec.base} is not a valid fit config ({refused})")
    known = known_keys(parser.parse(base))
    applied = list(base)
    for key, value in spec.fixed.items():
        applied += override_args({key: value})
        _check_key(spec, parser, known, "fixed", key, value, applied)
    fixed = parser.parse(applied)
    for end in (0, 1):
        values = {key: param.ends()[end] for key, param in spec.search.items()}
        for key, value in values.items():
            _check_key(spec, parser, known, "search", key, value, [*applied, *override_args({key: value})])
        refused = parser.refusal([*applied, *override_args(values)])
        if refused is not None:  # no single key is to blame: the combination is
            raise MinigptError(f"{spec.path}: base {spec.base} with the fixed and searched keys: {refused}")
    check_model_space(spec, fixed)
    return BaseConfig(yaml.safe_load(parser.parser.dump(fixed)), _max_steps(spec, fixed))


def _check_key(
    spec: SweepSpec, parser: FitParser, known: set[str], section: str, key: str, value: Any, args: list[str]
) -> None:
    refused = parser.refusal(args)
    if refused is None:
        return
    moved = moved_key_message(key)
    if moved is not None:
        raise MinigptError(f"{spec.path}: {section}.{key}: {moved}")
    if full_key(key) not in known:
        close = difflib.get_close_matches(full_key(key), sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else "; `minigpt fit --help` lists the keys"
        raise MinigptError(f"{spec.path}: {section}.{key}: not a key of the fit config {spec.base.name}{hint}")
    raise MinigptError(f"{spec.path}: {section}.{key}: {value!r} is refused by the fit parser ({refused})")


def _max_steps(spec: SweepSpec, config: Namespace) -> int:
    max_steps = config.trainer.max_steps
    if not isinstance(max_steps, int) or max_steps <= 0:
        raise MinigptError(
            f"{spec.path}: fixed: trainer.max_steps is {max_steps!r}; a sweep gives every trial the same step "
            "budget: set it (e.g. trainer.max_steps: 1000) in the base config or under fixed"
        )
    interval = config.trainer.val_check_interval
    if isinstance(interval, int) and not isinstance(interval, bool) and interval > max_steps:
        raise MinigptError(
            f"{spec.path}: fixed: trainer.val_check_interval ({interval}) is above trainer.max_steps ({max_steps}), "
            "so no validation would report the objective; set it to max_steps or less"
        )
    return max_steps


def model_problem(model: dict[str, Any]) -> str | None:
    """Why LanguageModel refuses these model.* values (GPTConfig's checks included), or None."""
    values = dict(model)
    try:
        values["gpt"] = GPTConfig(**(values.get("gpt") or {}))
        LanguageModel(**values)
    except (MinigptError, TypeError, ValueError) as error:
        return str(error)
    return None


def check_model_space(spec: SweepSpec, config: Namespace) -> None:
    """Refuse a space in which no combination of the searched model.* values builds a model:
    every trial would be pruned."""
    model = config.model.as_dict()
    searched = {key: param for key, param in spec.search.items() if key.startswith("model.")}
    if model.get("init_from"):
        return  # the architecture comes from the weights
    options: dict[str, list[Any]] = {}
    for key, param in searched.items():
        candidates = param.candidates()
        if candidates is None:
            return
        options[key] = candidates
    total = 1
    for values in options.values():
        total *= len(values)
    if total > MAX_COMBINATIONS:
        return
    problems = []
    for combination in itertools.product(*options.values()):
        trial = yaml.safe_load(yaml.safe_dump(model))  # a deep copy of plain data
        for key, value in zip(options, combination, strict=True):
            *path, name = key.split(".")[1:]
            node = trial
            for part in path:
                node = node.setdefault(part, {})
            node[name] = value
        problem = model_problem(trial)
        if problem is None:
            return
        problems.append(problem)
    if not options:
        raise MinigptError(
            f"{spec.path}: fixed: the base config with its fixed keys gives no valid model ({problems[0]})"
        )
    mentioned = [key for key in options if any(f"{key} " in problem or f"{key}." in problem for problem in problems)]
    raise MinigptError(
        f"{spec.path}: search: no combination of {', '.join(mentioned or options)} gives a valid model "
        f"(e.g. {problems[0]}); change the choices"
    )
