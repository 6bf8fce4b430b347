"""The sweep's keys checked against its base fit config, with the `minigpt fit` parser itself.

Each check is `minigpt fit --config BASE ... --print_config` run in-process through
`run_lightning_cli`: exactly what a trial will parse, so a key is accepted here if and only if a
trial accepts it (`data.batch_size` as well as `data.init_args.batch_size`, nested dataclass
fields such as `data.init_args.tokenizer.vocab_size`), and nothing is instantiated or written.
"""

from __future__ import annotations

import difflib
import io
import itertools
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, fields
from typing import Any

import yaml

from minigpt.commands.train import run_lightning_cli
from minigpt.errors import MinigptError
from minigpt.model import PRESETS, GPTConfig
from minigpt.sweep.spec import SweepSpec, override_args

# Model values that decide whether a GPT can be built at all (see GPTConfig and LanguageModel).
MODEL_KEYS = ("n_layer", "n_head", "n_embd", "dropout", "learning_rate", "min_lr")
MAX_COMBINATIONS = 100_000
# How the fit command's one-line errors begin when a key does not exist.
UNKNOWN_KEY_MESSAGES = ("unknown option", "unknown key", "--data: no option")


@dataclass(frozen=True)
class BaseConfig:
    """The base config with the fixed overrides, as `--print_config` resolves it."""

    config: dict[str, Any]
    max_steps: int


def base_args(spec: SweepSpec) -> list[str]:
    return ["fit", "--config", str(spec.base), *override_args(spec.fixed)]


def print_config(args: list[str]) -> tuple[dict[str, Any] | None, str]:
    """(the resolved config, "") or (None, what the parser said)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")
            run_lightning_cli([*args, "--print_config"])
    except SystemExit as exit:
        if exit.code not in (0, None):
            return None, err.getvalue()
    except MinigptError as error:
        return None, str(error)
    return yaml.safe_load(out.getvalue()), ""


def parser_complaint(text: str) -> tuple[bool, str]:
    """(is it an unknown key, the fit parser's one-line message: see commands.train.one_line_parse_error)."""
    message = " ".join(text.split()) or "the fit parser refused it"
    return message.startswith(UNKNOWN_KEY_MESSAGES), message


def flat_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(flat_keys(value, dotted + "."))
    # `data.batch_size` is the parser's shorthand for `data.init_args.batch_size`.
    return keys + [key.replace(".init_args.", ".", 1) for key in keys if ".init_args." in key]


def check_against_base(spec: SweepSpec) -> BaseConfig:
    """Every fixed and searched key is a fit option and each end of each range is accepted."""
    config: dict[str, Any] | None = None
    for end in (0, 1):
        values = {key: param.ends()[end] for key, param in spec.search.items()}
        resolved, said = print_config([*base_args(spec), *override_args(values)])
        if resolved is None:
            _locate(spec, values)
            # No single key is to blame: the combination is.
            raise MinigptError(
                f"{spec.path}: base {spec.base} with the fixed and searched keys: {parser_complaint(said)[1]}"
            )
        config = config or resolved
    assert config is not None
    base = BaseConfig(config, _max_steps(spec, config))
    check_model_space(spec, config)
    return base


def _locate(spec: SweepSpec, values: dict[str, Any]) -> None:
    """Find the first key the parser refuses, adding one at a time; raise naming it."""
    config, said = print_config(["fit", "--config", str(spec.base)])
    if config is None:
        raise MinigptError(f"{spec.path}: base: {spec.base} is not a valid fit config ({parser_complaint(said)[1]})")
    known = flat_keys(config)
    applied: list[str] = []
    steps = [("fixed", key, value) for key, value in spec.fixed.items()]
    steps += [("search", key, value) for key, value in values.items()]
    for section, key, value in steps:
        args = override_args({key: value})
        checked, said = print_config(["fit", "--config", str(spec.base), *applied, *args])
        if checked is None:
            unknown, complaint = parser_complaint(said)
            if unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]}?" if close else "; see minigpt fit --help for the keys"
                raise MinigptError(f"{spec.path}: {section}.{key}: not a key of the fit config {spec.base.name}{hint}")
            raise MinigptError(f"{spec.path}: {section}.{key}: {value!r} is refused by the fit parser ({complaint})")
        if section == "fixed":
            applied.extend(args)


def _max_steps(spec: SweepSpec, config: dict[str, Any]) -> int:
    trainer = config.get("trainer") or {}
    max_steps = trainer.get("max_steps")
    if not isinstance(max_steps, int) or max_steps <= 0:
        raise MinigptError(
            f"{spec.path}: fixed: trainer.max_steps is {max_steps!r}; a sweep gives every trial the same step "
            "budget: set it (e.g. trainer.max_steps: 1000) in the base config or under fixed"
        )
    interval = trainer.get("val_check_interval")
    if isinstance(interval, int) and not isinstance(interval, bool) and interval > max_steps:
        raise MinigptError(
            f"{spec.path}: fixed: trainer.val_check_interval ({interval}) is above trainer.max_steps ({max_steps}), "
            "so no validation would report the objective; set it to max_steps or less"
        )
    return max_steps


def _base_value(model: dict[str, Any], name: str) -> Any:
    """The value LanguageModel would use: the config's, else its preset's, else GPTConfig's default."""
    if model.get(name) is not None:
        return model[name]
    preset = model.get("preset")
    if preset in PRESETS and hasattr(PRESETS[preset], name):
        return getattr(PRESETS[preset], name)
    return next((f.default for f in fields(GPTConfig) if f.name == name), None)


def model_problem(values: dict[str, Any]) -> str | None:
    """Why a GPT with these values cannot be built, or None."""
    try:
        GPTConfig(
            vocab_size=1,
            block_size=1,
            n_layer=values["n_layer"],
            n_head=values["n_head"],
            n_embd=values["n_embd"],
            dropout=values["dropout"],
        )
    except MinigptError as error:
        return str(error)
    except TypeError as error:  # a value of the wrong type: the parser would have said so already
        return str(error)
    if values["min_lr"] > values["learning_rate"]:
        return f"model.min_lr ({values['min_lr']}) must not exceed model.learning_rate ({values['learning_rate']})"
    return None


def check_model_space(spec: SweepSpec, config: dict[str, Any]) -> None:
    """Refuse a space in which no combination builds a model: every trial would be pruned."""
    model = config.get("model") or {}
    if model.get("arch", "gpt") != "gpt" or model.get("init_from") or "model.preset" in spec.search:
        return  # the architecture comes from elsewhere
    options: dict[str, list[Any]] = {}
    for name in MODEL_KEYS:
        param = spec.search.get(f"model.{name}")
        candidates = param.candidates() if param else [_base_value(model, name)]
        if candidates is None:
            return
        options[name] = candidates
    total = 1
    for values in options.values():
        total *= len(values)
    if total > MAX_COMBINATIONS:
        return
    searched = [f"model.{name}" for name in MODEL_KEYS if f"model.{name}" in spec.search]
    first_problem = None
    mentioned: set[str] = set()  # the keys the problems are about (n_embd and n_head, say)
    for combination in itertools.product(*options.values()):
        problem = model_problem(dict(zip(options, combination, strict=True)))
        if problem is None:
            return
        first_problem = first_problem or problem
        mentioned.update(key for key in searched if f"{key} " in problem)
    searched = [key for key in searched if key in mentioned] or searched
    if not searched:
        raise MinigptError(
            f"{spec.path}: fixed: the base config with its fixed keys gives no valid model ({first_problem})"
        )
    raise MinigptError(
        f"{spec.path}: search: no combination of {', '.join(searched)} gives a valid model "
        f"(e.g. {first_problem}); change the choices"
    )
