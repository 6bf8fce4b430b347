"""`minigpt sweep --config SWEEP.yaml`: run (or resume, or join) a hyperparameter search
(minigpt.sweep). Its parser is in minigpt.commands.arguments: --help loads neither Optuna nor
Lightning."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import optuna

from minigpt.sweep import report, storage
from minigpt.sweep.base import check_against_base
from minigpt.sweep.run import SweepStopped, make_pruner, make_sampler, run_study
from minigpt.sweep.spec import load_spec


def run(options: argparse.Namespace) -> None:
    spec = load_spec(
        Path(options.config),
        n_trials=options.n_trials,
        storage=options.storage,
        name=options.name,
        pruner=options.pruner,
        overrides=options.set,
    )
    # Optuna's own per-trial lines (with tracebacks for failures) would repeat the sweep's.
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    if options.show:
        study = storage.open_study(spec, storage.open_storage(spec, create=False), create=False)
        print(report.summary_markdown(spec, study), end="")
        return

    base = check_against_base(spec)
    if spec.storage is None:  # the study file lives in the sweep folder
        storage.prepare_output(spec.output)
        study_storage = storage.open_storage(spec, create=True)
    else:  # a URL that cannot be opened leaves no empty sweep folder behind
        study_storage = storage.open_storage(spec, create=True)
        storage.prepare_output(spec.output)
    study = storage.open_study(
        spec, study_storage, create=True, sampler=make_sampler(spec, spec.sampler.seed), pruner=make_pruner(spec, base)
    )
    done = sum(storage.counts_toward_total(t) for t in study.get_trials(deepcopy=False))
    print(
        f"sweep {spec.name}: {done} of {spec.n_trials} trials already in "
        f"{storage.shown_url(storage.storage_url(spec))}; results in {spec.output}/",
        file=sys.stderr,
    )

    def finish(sweep: Any) -> None:
        report.write_reports(spec, base.config, study)
        summarise(spec, study, sweep.timings)

    try:
        run_study(spec, base, study, finish)
    except SweepStopped as stop:
        stopped(spec, stop.status)
    except KeyboardInterrupt:
        stopped(spec, 130)


def stopped(spec: Any, status: int) -> None:
    print(
        f"minigpt: sweep {spec.name} stopped; the running trial is queued to run again: "
        f"rerun the same command to resume",
        file=sys.stderr,
    )
    sys.exit(status)


def summarise(spec: Any, study: Any, timings: list[dict[str, float]]) -> None:
    best = report.best_trial(study)
    if best is not None:
        print(
            f"best: trial {best.number}, {spec.objective} {best.value:.4f}; {spec.output / 'best.yaml'} trains it",
            file=sys.stderr,
        )
    if timings:
        outside = statistics.median(t["wall_s"] - t["fit_s"] for t in timings)
        share = statistics.median((t["wall_s"] - t["fit_s"]) / t["wall_s"] for t in timings if t["wall_s"] > 0)
        print(
            f"{len(timings)} complete trials in this process; outside Trainer.fit each took a median {outside:.1f} s "
            f"({share:.1%} of its wall time)",
            file=sys.stderr,
        )
