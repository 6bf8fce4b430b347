"""The sweep file: which fit config, what to search, how, and where results go.

Everything here is checked from the file alone (plus whether the base config exists), before any
trial runs or any file is written; `minigpt.sweep.base` then checks the keys against the fit
parser. Problems are MinigptErrors naming the file and the key.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from minigpt.errors import MinigptError, first_line

OBJECTIVES = ("val/loss", "val/bits_per_char")
SAMPLERS: dict[str, dict[str, type]] = {
    "tpe": {"seed": int, "n_startup_trials": int, "multivariate": bool},
    "random": {"seed": int},
}
PRUNERS: dict[str, dict[str, type]] = {
    "median": {"n_startup_trials": int, "n_warmup_steps": int, "interval_steps": int},
    "hyperband": {"min_resource": int, "max_resource": int, "reduction_factor": int},
    "none": {},
}
TOP_LEVEL = (
    "name",
    "base",
    "fixed",
    "search",
    "objective",
    "n_trials",
    "sampler",
    "pruner",
    "enqueue",
    "storage",
    "output",
    "heartbeat",
)
# Set by the sweep itself for every trial, or not a config value at all.
RESERVED_KEYS = ("trainer.default_root_dir", "config", "print_config")
DISTRIBUTION_FIELDS = ("choices", "low", "high", "step", "log", "type")
KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `3e-4` as a string; sweep files are full of such learning rates."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Param:
    """One searched key: a categorical, int or float distribution."""

    key: str
    kind: Literal["categorical", "int", "float"]
    choices: tuple[Any, ...] = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False

    def describe(self) -> dict[str, Any]:
        """The distribution as plain data: stored with the study, compared when it is reopened."""
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        return {"type": self.kind, "low": self.low, "high": self.high, "step": self.step, "log": self.log}

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if not is_number(value) or not self.low <= value <= self.high:
            return False
        return self.kind == "float" or float(value).is_integer()

    def ends(self) -> tuple[Any, Any]:
        """The two values that bound what can be sampled: each is tried against the fit parser."""
        if self.kind == "categorical":
            return self.choices[0], self.choices[-1]
        return self.low, self.high

    def candidates(self, limit: int = 1000) -> list[Any] | None:
        """Values worth trying when asking whether any combination is valid; None if too many."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            step = int(self.step or 1)
            count = (int(self.high) - int(self.low)) // step + 1
            return list(range(int(self.low), int(self.high) + 1, step)) if count <= limit else None
        # A continuous range: its ends and middle show whether a valid sub-range exists.
        return [self.low, (self.low + self.high) / 2, self.high]


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "tpe"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    name: str = "median"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    name: str
    base: Path
    fixed: dict[str, Any]
    search: dict[str, Param]
    objective: str
    n_trials: int
    sampler: SamplerSpec
    pruner: PrunerSpec
    enqueue: list[dict[str, Any]]
    storage: str | None
    output: Path
    heartbeat_interval: int = 60
    grace_period: int = 180

    def space(self) -> dict[str, Any]:
        """What makes two runs the same study: the searched keys and their distributions."""
        return {key: param.describe() for key, param in self.search.items()}


def cli_value(value: Any) -> str:
    """A YAML value as jsonargparse reads it from the command line."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def override_args(values: dict[str, Any]) -> list[str]:
    return [f"--{key}={cli_value(value)}" for key, value in values.items()]


class _Checker:
    """Builds errors that name the sweep file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> MinigptError:
        return MinigptError(f"{self.path}: {key}: {problem}")


def load_spec(
    path: Path,
    *,
    n_trials: int | None = None,
    storage: str | None = None,
    name: str | None = None,
    pruner: str | None = None,
    overrides: list[str] | None = None,
) -> SweepSpec:
    """Read and check a sweep file; the command-line flags given (not None) win over it.

    `name` also moves the default output folder to sweeps/<name>; `overrides` ("KEY=VALUE", from
    --set) fix keys for every trial over the file's `fixed`.
    """
    if not path.is_file():
        raise MinigptError(f"--config: {path} does not exist; pass a sweep file such as configs/sweep-small.yaml")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise MinigptError(f"--config: {path} is not a readable YAML file ({first_line(error)})") from None
    check = _Checker(path)
    if not isinstance(raw, dict):
        raise MinigptError(f"--config: {path} should be a mapping with name, base, search, ... (see docs/sweeps.md)")
    for key in raw:
        if key not in TOP_LEVEL:
            raise check.fail(str(key), f"unknown field; the sweep file takes {', '.join(TOP_LEVEL)}")
    if name is not None:
        raw = {**raw, "name": name, "output": None}
    if pruner is not None:
        raw = {**raw, "pruner": pruner}
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise check.fail("name", f"{name!r} should be a study name of letters, digits, '_', '-' or '.'")
    base = _base_path(check, path, raw.get("base"))
    fixed = _fixed(check, raw.get("fixed") or {})
    search = _search(check, raw.get("search"), fixed)
    for key, value in _overrides(path, overrides or []).items():
        if key in search:
            raise MinigptError(
                f"--set {key}: it is searched in {path}; remove it from search there to fix it for every trial"
            )
        fixed[key] = value
    objective = raw.get("objective", "val/loss")
    if objective not in OBJECTIVES:
        raise check.fail("objective", f"{objective!r} is not one of {', '.join(OBJECTIVES)} (both are minimised)")
    trials = raw.get("n_trials", 30) if n_trials is None else n_trials
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        where = "--n_trials" if n_trials is not None else "n_trials"
        raise check.fail(where, f"{trials!r} should be a positive number of trials")
    output = raw.get("output") or f"sweeps/{name}"
    if not isinstance(output, str):
        raise check.fail("output", f"{output!r} should be a folder path")
    storage = storage if storage is not None else raw.get("storage")
    if storage is not None and (not isinstance(storage, str) or not storage.strip()):
        raise check.fail("storage", f"{storage!r} should be a database URL or journal:PATH")
    interval, grace = _heartbeat(check, raw.get("heartbeat") or {})
    return SweepSpec(
        path=path,
        name=name,
        base=base,
        fixed=fixed,
        search=search,
        objective=objective,
        n_trials=trials,
        sampler=_sampler(check, raw.get("sampler", "tpe")),
        pruner=_pruner(check, raw.get("pruner", "median")),
        enqueue=_enqueue(check, raw.get("enqueue") or [], search),
        storage=storage,
        output=Path(output),
        heartbeat_interval=interval,
        grace_period=grace,
    )


def _base_path(check: _Checker, path: Path, base: Any) -> Path:
    # Relative to the sweep file, like an include: the pair moves together.
    if not isinstance(base, str) or not base:
        raise check.fail("base", "missing; name the fit config to start from, e.g. base: pretrain-small.yaml")
    resolved = (path.parent / base).resolve()
    if not resolved.is_file():
        raise check.fail("base", f"{resolved} does not exist (a relative base is read from the sweep file's folder)")
    return resolved


def _check_key(check: _Checker, section: str, key: Any) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise check.fail(f"{section}.{key}", "not a dotted key of the fit config, such as model.gpt.n_embd")
    if key in RESERVED_KEYS:
        raise check.fail(f"{section}.{key}", "is set by the sweep itself (each trial has its own folder)")
    return key


def _fixed(check: _Checker, fixed: Any) -> dict[str, Any]:
    if not isinstance(fixed, dict):
        raise check.fail("fixed", "should map dotted keys to values, e.g. trainer.max_steps: 1000")
    return {_check_key(check, "fixed", key): value for key, value in fixed.items()}


def _overrides(path: Path, overrides: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs, their values read as YAML (as in the sweep file)."""
    values = {}
    for override in overrides:
        key, equals, text = override.partition("=")
        if not equals or not KEY_PATTERN.fullmatch(key):
            raise MinigptError(f"--set {override!r}: write KEY=VALUE with a dotted fit key, e.g. trainer.max_steps=40")
        if key in RESERVED_KEYS:
            raise MinigptError(f"--set {key}: is set by the sweep itself (each trial has its own folder)")
        try:
            values[key] = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as error:
            raise MinigptError(f"--set {key}: {text!r} is not a YAML value ({first_line(error)})") from None
    return values


def _search(check: _Checker, search: Any, fixed: dict[str, Any]) -> dict[str, Param]:
    if not isinstance(search, dict) or not search:
        raise check.fail(
            "search", "missing or empty; give at least one key, e.g. model.gpt.n_embd: {choices: [64, 128]}"
        )
    params = {}
    for key, raw in search.items():
        _check_key(check, "search", key)
        if key in fixed:
            raise check.fail(f"search.{key}", "is also under fixed; keep it in one of them")
        params[key] = _param(check, f"search.{key}", key, raw)
    return params


def _param(check: _Checker, where: str, key: str, raw: Any) -> Param:
    usage = "use {choices: [...]} or {low: L, high: H} with optional step, log and type"
    if not isinstance(raw, dict):
        raise check.fail(where, f"{raw!r} is not a distribution; {usage}")
    for name in raw:
        if name not in DISTRIBUTION_FIELDS:
            raise check.fail(where, f"unknown field {name!r}; {usage}")
    if "choices" in raw:
        if len(raw) > 1:
            raise check.fail(where, "choices cannot be combined with low, high, step, log or type")
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise check.fail(where, "choices must be a non-empty list")
        for choice in choices:
            if not (choice is None or isinstance(choice, (bool, int, float, str))):
                raise check.fail(where, f"choice {choice!r} must be a number, string, boolean or null")
        return Param(key, "categorical", choices=tuple(choices))
    if "low" not in raw or "high" not in raw:
        raise check.fail(where, f"needs both low and high; {usage}")
    low, high, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
    for name, value in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if not is_number(value) or not math.isfinite(value):
            raise check.fail(where, f"{name} must be a number, got {value!r}")
    kind = raw.get("type") or ("int" if all(isinstance(v, int) for v in (low, high, step or 1)) else "float")
    if kind not in ("int", "float"):
        raise check.fail(where, f"type must be int or float, got {kind!r}")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise check.fail(where, "type int needs whole numbers for low, high and step")
    if low > high:
        raise check.fail(where, f"low ({low}) is above high ({high})")
    if not isinstance(log, bool):
        raise check.fail(where, f"log must be true or false, got {log!r}")
    if log and low <= 0:
        raise check.fail(where, f"log: true needs low > 0, got {low}")
    if step is not None:
        if step <= 0:
            raise check.fail(where, f"step must be positive, got {step}")
        if log:
            raise check.fail(where, "log and step cannot be combined; drop one of them")
        count = (high - low) / step
        if abs(count - round(count)) > 1e-9 * max(1.0, abs(count)):
            raise check.fail(where, f"high - low ({high - low}) is not a multiple of step ({step})")
    if kind == "int":
        return Param(key, "int", low=int(low), high=int(high), step=int(step or 1), log=log)
    return Param(key, "float", low=float(low), high=float(high), step=None if step is None else float(step), log=log)


def _options(check: _Checker, where: str, raw: Any, table: dict[str, dict[str, type]]) -> tuple[str, dict[str, Any]]:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise check.fail(where, f"{raw!r} should be a name ({', '.join(table)}) or a mapping with name")
    name = raw["name"]
    if name not in table:
        raise check.fail(f"{where}.name", f"unknown {where} {name!r}; choose one of {', '.join(table)}")
    options = {}
    for option, value in raw.items():
        if option == "name":
            continue
        if option not in table[name]:
            allowed = ", ".join(table[name]) or "no options"
            raise check.fail(f"{where}.{option}", f"not an option of the {name} {where} (it takes {allowed})")
        kind = table[name][option]
        if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise check.fail(f"{where}.{option}", f"should be a whole number of 0 or more, got {value!r}")
        if kind is bool and not isinstance(value, bool):
            raise check.fail(f"{where}.{option}", f"should be true or false, got {value!r}")
        options[option] = value
    return name, options


def _sampler(check: _Checker, raw: Any) -> SamplerSpec:
    name, options = _options(check, "sampler", raw, SAMPLERS)
    return SamplerSpec(name, options.pop("seed", 0), options)


def _pruner(check: _Checker, raw: Any) -> PrunerSpec:
    name, options = _options(check, "pruner", raw, PRUNERS)
    if name == "hyperband":
        for option in ("min_resource", "reduction_factor"):
            if options.get(option, 1) < 1 or (option == "reduction_factor" and options.get(option, 2) < 2):
                raise check.fail(f"pruner.{option}", f"is too small ({options[option]})")
    if name == "median" and options.get("interval_steps", 1) < 1:
        raise check.fail("pruner.interval_steps", "should be 1 or more")
    return PrunerSpec(name, options)


def _enqueue(check: _Checker, raw: Any, search: dict[str, Param]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise check.fail("enqueue", "should be a list of trials, each a mapping of searched keys to values")
    trials = []
    for index, trial in enumerate(raw):
        where = f"enqueue[{index}]"
        if not isinstance(trial, dict):
            raise check.fail(where, "should map searched keys to values")
        for key, value in trial.items():
            if key not in search:
                raise check.fail(f"{where}.{key}", "is not a searched key; enqueued trials set searched keys only")
            if not search[key].contains(value):
                raise check.fail(f"{where}.{key}", f"{value!r} is outside its distribution {search[key].describe()}")
        trials.append(dict(trial))
    return trials


def _heartbeat(check: _Checker, raw: Any) -> tuple[int, int]:
    if not isinstance(raw, dict) or set(raw) - {"interval", "grace_period"}:
        raise check.fail("heartbeat", "should be a mapping with interval and grace_period (seconds)")
    interval, grace = raw.get("interval", 60), raw.get("grace_period", 180)
    for name, value in (("interval", interval), ("grace_period", grace)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise check.fail(f"heartbeat.{name}", f"should be a whole number of seconds, 1 or more, got {value!r}")
    if grace <= interval:
        raise check.fail("heartbeat.grace_period", f"({grace} s) should be longer than the interval ({interval} s)")
    return interval, grace
