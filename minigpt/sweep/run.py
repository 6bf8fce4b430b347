"""The study loop, and each trial as an ordinary `minigpt fit` run in this process.

A trial is `run_lightning_cli(["fit", "--config", base, *fixed, *sampled,
"--trainer.default_root_dir", "<output>/trial_<n>"], extra_callbacks=[pruning])`: the same parse,
checks, checkpoints and TensorBoard logs as `minigpt fit`, without a process start per trial.

Outcomes: COMPLETE with the last validation's objective; PRUNED when the pruner stops it, or
when the sampled values make no valid model (user attr `pruned_reason`); FAIL with a one-line
`fail_reason` when the run raises (NaN loss, out of memory, anything else). The sweep goes on
after each. Ctrl-C or SIGTERM stops the sweep: the running trial is marked FAIL and queued to
run again, so rerunning the command resumes.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import optuna
import torch
from optuna.trial import TrialState

from minigpt.errors import MinigptError
from minigpt.lightning_cli import run_lightning_cli
from minigpt.sweep import report
from minigpt.sweep.base import BaseConfig, base_args
from minigpt.sweep.pruning import PruningCallback
from minigpt.sweep.spec import Param, SweepSpec, cli_value, override_args
from minigpt.sweep.storage import counts_toward_total, fail_dead_trials, retry_trial, worker_id

# Exit statuses of a fit stopped by a signal: run_lightning_cli's 128 + SIGINT/SIGTERM, and
# Lightning's own 1 after a KeyboardInterrupt it caught (a second Ctrl-C, or one during setup).
STOPPED_FIT = (1, 128 + signal.SIGINT, 128 + signal.SIGTERM)


class TrialFailed(Exception):
    """The trial's run raised: recorded as FAIL with its reason, and the sweep goes on."""


class SweepStopped(Exception):
    """Ctrl-C or SIGTERM: the sweep ends after recording the running trial."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class SurplusTrial(Exception):
    """Other workers already started n_trials trials: this one is not run."""


def make_sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    options = dict(spec.sampler.options)
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: workers running side by side do not propose the same point.
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=options.get("n_startup_trials", 10),
            multivariate=options.get("multivariate", True),
            constant_liar=True,
        )


def make_pruner(spec: SweepSpec, base: BaseConfig) -> optuna.pruners.BasePruner:
    options = dict(spec.pruner.options)
    if spec.pruner.name == "none":
        return optuna.pruners.NopPruner()
    if spec.pruner.name == "hyperband":
        interval = (base.config.get("trainer") or {}).get("val_check_interval")
        return optuna.pruners.HyperbandPruner(
            min_resource=options.get("min_resource", interval if isinstance(interval, int) else 1),
            max_resource=options.get("max_resource", base.max_steps),
            reduction_factor=options.get("reduction_factor", 3),
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=options.get("n_startup_trials", 5),
        n_warmup_steps=options.get("n_warmup_steps", 0),
        interval_steps=options.get("interval_steps", 1),
    )


@dataclass
class Progress:
    """One line per trial on stderr."""

    spec: SweepSpec

    def line(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, seconds: float) -> str:
        params = " ".join(f"{key}={format_value(value)}" for key, value in trial.params.items())
        done = sum(counts_toward_total(t) for t in study.get_trials(deepcopy=False))
        head = f"trial {trial.number} ({done}/{self.spec.n_trials}): {params}"
        if trial.state == TrialState.COMPLETE:
            best = report.best_trial(study)
            assert best is not None
            outcome = f"{self.spec.objective} {trial.value:.4f} (best {best.value:.4f}, trial {best.number})"
        elif trial.state == TrialState.PRUNED and "pruned_reason" in trial.user_attrs:
            outcome = f"not run: {trial.user_attrs['pruned_reason']}"
        elif trial.state == TrialState.PRUNED:
            value = f", {self.spec.objective} {trial.value:.4f}" if trial.value is not None else ""
            outcome = f"pruned at step {trial.user_attrs.get('steps', '?')}{value}"
        elif "fail_reason" in trial.user_attrs:
            outcome = f"failed: {trial.user_attrs['fail_reason']}"
        else:
            outcome = "stopped; queued to run again"
        return f"{head} -> {outcome}, {seconds:.0f} s"

    def show(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, seconds: float) -> None:
        print(self.line(study, trial, seconds), file=sys.stderr, flush=True)


def suggest(trial: optuna.Trial, param: Param) -> Any:
    if param.kind == "categorical":
        return trial.suggest_categorical(param.key, list(param.choices))
    if param.kind == "int":
        return trial.suggest_int(param.key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(param.key, param.low, param.high, step=param.step, log=param.log)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return cli_value(value)


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "no message"
    text = text if len(text) <= 300 else text[:297] + "..."
    return text if isinstance(error, MinigptError) else f"{type(error).__name__}: {text}"


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's per-run banners (seed, devices, tips) would bury the sweep's progress lines."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class Sweep:
    """Runs trials until the study holds `n_trials` of them (counting other workers' too)."""

    def __init__(self, spec: SweepSpec, base: BaseConfig, study: optuna.Study) -> None:
        self.spec = spec
        self.base = base
        self.study = study
        self.progress = Progress(spec)
        self.timings: list[dict[str, float]] = []

    def trial_args(self, params: dict[str, Any], folder: Path) -> list[str]:
        return [
            "fit",
            *base_args(self.spec),
            *override_args(params),
            "--trainer.default_root_dir",
            str(folder),
        ]

    def remaining(self) -> int:
        return self.spec.n_trials - sum(counts_toward_total(t) for t in self.study.get_trials(deepcopy=False))

    def run(self) -> None:
        for params in self.spec.enqueue:
            self.study.enqueue_trial(params, skip_if_exists=True)
        while True:
            for number in fail_dead_trials(self.study):
                print(
                    f"trial {number} was left running by a process that is gone: marked failed, queued to run again",
                    file=sys.stderr,
                )
            if self.remaining() <= 0:
                return
            started = time.perf_counter()
            self.study.optimize(self.objective, n_trials=1, catch=(TrialFailed, SurplusTrial), gc_after_trial=True)
            trial = self.study.get_trials(deepcopy=False)[self._last_number]
            if trial.user_attrs.get("surplus"):
                return
            reports_started = time.perf_counter()
            report.write_trial_hparams(self.spec, trial)
            report.write_reports(self.spec, self.base.config, self.study)
            self.study.set_user_attr(f"reports_s:{trial.number}", round(time.perf_counter() - reports_started, 3))
            wall = time.perf_counter() - started
            if trial.state == TrialState.COMPLETE:  # a full-length run: what the overhead is measured against
                self.timings.append({"wall_s": wall, "fit_s": trial.user_attrs["fit_s"]})
            self.progress.show(self.study, trial, wall)

    def objective(self, trial: optuna.Trial) -> float:
        self._last_number = trial.number
        started = time.perf_counter()
        trial.set_user_attr("worker", worker_id())
        # The sampler's random state follows the trial number, so a resumed study samples what an
        # uninterrupted one would, and two workers never share a seed.
        self.study.sampler = make_sampler(self.spec, self.spec.sampler.seed + trial.number)
        ahead = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
        if sum(counts_toward_total(t) for t in ahead) >= self.spec.n_trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"the study already has {self.spec.n_trials} trials")
        params = {key: suggest(trial, param) for key, param in self.spec.search.items()}
        folder = self.spec.output / f"trial_{trial.number}"
        callback = PruningCallback(trial, self.spec.objective)
        try:
            try:
                with quiet_lightning():
                    run_fit(self.trial_args(params, folder), callback)
            finally:
                restore_sigint()
        except KeyboardInterrupt:
            self._stopped(trial, callback, started, 128 + signal.SIGINT)
        except SystemExit as exit:
            if exit.code in STOPPED_FIT:
                self._stopped(trial, callback, started, 128 + signal.SIGINT if exit.code == 1 else int(exit.code))
            self._fail(trial, callback, started, f"the fit exited with status {exit.code}")
        except MinigptError as error:
            if not callback.started:
                # Built from the sampled values, the model or data module refused them.
                trial.set_user_attr("pruned_reason", one_line(error))
                trial.set_user_attr("steps", 0)
                raise optuna.TrialPruned(one_line(error)) from None
            self._fail(trial, callback, started, one_line(error))
        except Exception as error:
            self._fail(trial, callback, started, one_line(error))
        finally:
            free_memory()
        self._record(trial, callback, started)
        if callback.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at step {callback.pruned_at}")
        if callback.last_value is None:
            self._fail(trial, callback, started, f"no validation logged {self.spec.objective}")
        if not math.isfinite(callback.last_value):
            self._fail(trial, callback, started, f"{self.spec.objective} is {callback.last_value}")
        return callback.last_value

    def _record(self, trial: optuna.Trial, callback: PruningCallback, started: float) -> None:
        trial.set_user_attr("steps", callback.steps)
        trial.set_user_attr("fit_s", round(callback.fit_seconds, 3))
        trial.set_user_attr("trial_s", round(time.perf_counter() - started, 3))
        trial.set_user_attr("max_steps", self.base.max_steps)
        if callback.log_dir:
            trial.set_user_attr("log_dir", str(Path(callback.log_dir).resolve()))

    def _fail(self, trial: optuna.Trial, callback: PruningCallback, started: float, reason: str) -> NoReturn:
        self._record(trial, callback, started)
        trial.set_user_attr("fail_reason", reason)
        raise TrialFailed(reason)

    def _stopped(self, trial: optuna.Trial, callback: PruningCallback, started: float, status: int) -> NoReturn:
        self._record(trial, callback, started)
        retry_trial(self.study, trial)
        raise SweepStopped(status)


def run_fit(args: list[str], callback: PruningCallback) -> Any:
    return run_lightning_cli(args, extra_callbacks=[callback], resume_hint=False)


def restore_sigint() -> None:
    # Lightning ignores SIGINT after catching a KeyboardInterrupt; the sweep must stay stoppable.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_study(spec: SweepSpec, base: BaseConfig, study: optuna.Study, on_done: Callable[[Sweep], None]) -> None:
    sweep = Sweep(spec, base, study)
    try:
        sweep.run()
    finally:
        on_done(sweep)
