"""`minigpt sweep --config SWEEP.yaml`: run (or resume, or join) a hyperparameter search
(minigpt.sweep). Optuna and Lightning load only when a sweep runs."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minigpt.sweep.spec import load_spec


def sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt sweep",
        description="Search fit hyperparameters with Optuna: each trial is a `minigpt fit` of the base config "
        "with sampled values, pruned when its validations lag. Rerun the same command to resume; start it "
        "several times on one --storage to share the work. See docs/sweeps.md.",
    )
    parser.add_argument("--config", required=True, help="the sweep file, e.g. configs/sweep-small.yaml")
    parser.add_argument(
        "--storage",
        default=None,
        help="where the study lives: a database URL (sqlite:///study.db, postgresql://user@host/db) or "
        "journal:PATH (Optuna's journal file); default: sqlite file <output>/study.db",
    )
    parser.add_argument(
        "--n_trials", type=int, default=None, help="trials the study should hold in all (overrides the file's)"
    )
    parser.add_argument(
        "--name", default=None, help="study name, and the folder sweeps/NAME (overrides the file's name and output)"
    )
    parser.add_argument(
        "--pruner",
        default=None,
        choices=["median", "hyperband", "none"],
        help="override the file's pruner (its options are dropped), e.g. none to measure what pruning saves",
    )
    parser.add_argument("--show", action="store_true", help="print the trials of an existing study; train nothing")
    return parser


def run(args: Sequence[str]) -> None:
    options = sweep_parser().parse_args(args[1:])
    spec = load_spec(
        Path(options.config),
        n_trials=options.n_trials,
        storage=options.storage,
        name=options.name,
        pruner=options.pruner,
    )

    import optuna

    from minigpt.sweep import report, storage

    # Optuna's own per-trial lines (with tracebacks for failures) would repeat the sweep's.
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    if options.show:
        study = storage.open_study(spec, storage.open_storage(spec, create=False), create=False)
        print(report.summary_markdown(spec, study), end="")
        return

    from minigpt.sweep.base import check_against_base
    from minigpt.sweep.run import SweepStopped, make_pruner, make_sampler, run_study

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
    from minigpt.sweep.report import best_trial

    best = best_trial(study)
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
