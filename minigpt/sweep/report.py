"""What a sweep leaves behind, rewritten after every trial: summary.md, best.yaml, plots, HParams.

Every file is written to a temporary name and renamed over the old one, so a reader (or a second
worker writing the same file) never sees half of it.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from minigpt.files import atomic_file, write_text_atomic
from minigpt.sweep.base import FitParser, base_args
from minigpt.sweep.spec import SweepSpec, cli_value, override_args
from minigpt.sweep.storage import counts_toward_total

PLOTS = ("history.png", "intermediate.png", "parallel_coordinate.png", "importances.png")
STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "queued",
}


def shown_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial but those never run (queued, or one too many for n_trials)."""
    return [
        t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING and not t.user_attrs.get("surplus")
    ]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return min(complete, key=lambda t: (t.value, t.number)) if complete else None


def state_text(trial: FrozenTrial) -> str:
    if "pruned_reason" in trial.user_attrs:
        return f"invalid: {trial.user_attrs['pruned_reason']}"
    if "fail_reason" in trial.user_attrs:
        return f"failed: {trial.user_attrs['fail_reason']}"
    if trial.state == TrialState.FAIL:
        return "stopped (queued again)"
    return STATE_NAMES.get(trial.state, trial.state.name.lower())


def pruning_savings(trials: list[FrozenTrial]) -> tuple[int, int] | None:
    """(steps run, steps the same trials would have run unpruned), over trials that trained."""
    trained = [
        t
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        and "pruned_reason" not in t.user_attrs
        and "max_steps" in t.user_attrs
    ]
    if not trained:
        return None
    return sum(t.user_attrs["steps"] for t in trained), sum(t.user_attrs["max_steps"] for t in trained)


def overhead(study: optuna.Study, trials: list[FrozenTrial]) -> tuple[float, float] | None:
    """Median seconds per complete trial outside Trainer.fit, and that as a share of the trial's wall time."""
    spent = []
    for t in trials:
        reports = study.user_attrs.get(f"reports_s:{t.number}")
        if t.state != TrialState.COMPLETE or reports is None or "trial_s" not in t.user_attrs:
            continue
        wall = t.user_attrs["trial_s"] + reports
        spent.append((wall - t.user_attrs["fit_s"], wall))
    if not spent:
        return None
    seconds = statistics.median(outside for outside, _ in spent)
    return seconds, statistics.median(outside / wall for outside, wall in spent)


def importances(study: optuna.Study) -> dict[str, float]:
    """PED-ANOVA importances (numpy only: fANOVA would need scikit-learn); empty with < 2 complete trials."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
    except (ValueError, RuntimeError):  # e.g. every complete trial has the same parameters
        return {}


def summary_markdown(spec: SweepSpec, study: optuna.Study) -> str:
    trials = shown_trials(study)
    best = best_trial(study)
    keys = list(spec.search)
    counts = {name: sum(state_text(t).startswith(name) for t in trials) for name in ("complete", "pruned", "invalid")}
    failed = sum(t.state == TrialState.FAIL for t in trials)
    done = sum(counts_toward_total(t) for t in trials)
    lines = [
        f"# Sweep `{spec.name}`: {done} of {spec.n_trials} trials",
        "",
        f"Base config `{spec.base}`; objective `{spec.objective}` (minimised); sampler {spec.sampler.name} "
        f"(seed {spec.sampler.seed}); pruner {spec.pruner.name}.",
        f"Fixed: {', '.join(f'`{k}={cli_value(v)}`' for k, v in spec.fixed.items()) or 'nothing'}.",
        "",
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['invalid']} invalid, {failed} failed.",
    ]
    if best is not None:
        lines.append(
            f"Best: trial {best.number}, {spec.objective} {best.value:.4f} "
            f"(`minigpt fit --config {spec.output / 'best.yaml'}` trains it)."
        )
    savings = pruning_savings(trials)
    if savings is not None:
        run, unpruned = savings
        lines.append(f"Steps run: {run:,} of {unpruned:,} without pruning ({1 - run / unpruned:.1%} saved by pruning).")
    spent = overhead(study, trials)
    if spent is not None:
        lines.append(
            f"Sweep overhead (outside Trainer.fit) per complete trial: median {spent[0]:.1f} s, "
            f"{spent[1]:.1%} of its wall time."
        )
    ranked = importances(study)
    if ranked:
        lines.append("Parameter importances (PED-ANOVA): " + ", ".join(f"{k} {v:.2f}" for k, v in ranked.items()) + ".")
    lines += [
        "",
        "| trial | " + " | ".join(keys) + f" | {spec.objective} | steps | state | wall s |",
        "| ---: | " + " | ".join("---:" for _ in keys) + " | ---: | ---: | --- | ---: |",
    ]
    for t in trials:
        number = f"**{t.number}** (best)" if best is not None and t.number == best.number else str(t.number)
        params = [format_param(t.params[k]) if k in t.params else "" for k in keys]
        value = f"{t.value:.4f}" if t.value is not None and math.isfinite(t.value) else ""
        steps = str(t.user_attrs.get("steps", ""))
        wall = f"{t.user_attrs['trial_s']:.0f}" if "trial_s" in t.user_attrs else ""
        row = [number, *params, value, steps, state_text(t).replace("|", "/"), wall]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def format_param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else cli_value(value)


def best_config(spec: SweepSpec, base_config: dict[str, Any], best: FrozenTrial) -> dict[str, Any]:
    """The config the best trial ran with (its saved config.yaml), to train again as it is."""
    saved = Path(best.user_attrs.get("log_dir", "")) / "config.yaml"
    if best.user_attrs.get("log_dir") and saved.is_file():
        config = yaml.safe_load(saved.read_text(encoding="utf-8"))
    else:  # run by a worker whose files this machine cannot see: resolve it again
        config = FitParser().resolved([*base_args(spec), *override_args(best.params)])
    trainer = config.setdefault("trainer", {})
    # Where the trial wrote its run, and how many devices the sweep gave it, are the sweep's business.
    trainer["default_root_dir"] = None
    trainer["devices"] = (base_config.get("trainer") or {}).get("devices", "auto")
    return config


def write_best_yaml(spec: SweepSpec, base_config: dict[str, Any], study: optuna.Study) -> None:
    best = best_trial(study)
    if best is None:
        return
    config = best_config(spec, base_config, best)
    params = ", ".join(f"{k}={format_param(v)}" for k, v in best.params.items())
    header = (
        f"# The best trial of sweep {spec.name}: trial {best.number}, {spec.objective} {best.value:.4f} "
        f"after {best.user_attrs.get('steps', '?')} steps.\n"
        f"# {spec.base.name} with the sweep's fixed keys and {params}.\n"
        f"# minigpt fit --config {spec.output / 'best.yaml'}\n"
    )
    write_text_atomic(spec.output / "best.yaml", header + yaml.safe_dump(config, sort_keys=False))


def write_plots(spec: SweepSpec, study: optuna.Study) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    makers: dict[str, Callable[[], Any]] = {
        "history.png": lambda: plots.plot_optimization_history(study, target_name=spec.objective),
        "intermediate.png": lambda: plots.plot_intermediate_values(study),
        "parallel_coordinate.png": lambda: plots.plot_parallel_coordinate(study, target_name=spec.objective),
    }
    if complete >= 2:
        makers["importances.png"] = lambda: plots.plot_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target_name=spec.objective
        )
    for name, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = make()
            except (ValueError, RuntimeError, KeyError):  # too few trials for this plot yet
                continue
        axis = axes.flat[0] if hasattr(axes, "flat") else axes
        legend = axis.get_legend()
        if name == "intermediate.png" and legend is not None and len(study.trials) > 10:
            legend.remove()  # a line per trial: past ten, the legend would crowd out the plot
        figure = axis.figure
        figure.set_size_inches(8, 4.5)
        figure.tight_layout()
        with atomic_file(spec.output / name, "wb") as file:
            figure.savefig(file, format="png", dpi=90)
        plt.close(figure)


def write_reports(spec: SweepSpec, base_config: dict[str, Any], study: optuna.Study) -> None:
    write_text_atomic(spec.output / "summary.md", summary_markdown(spec, study))
    write_best_yaml(spec, base_config, study)
    write_plots(spec, study)


def write_trial_hparams(spec: SweepSpec, trial: FrozenTrial) -> None:
    """One run per trial under <output>/tensorboard/, for TensorBoard's HParams tab."""
    if trial.value is None or not math.isfinite(trial.value):
        return  # failed or invalid: no objective to compare
    folder = spec.output / "tensorboard" / f"trial_{trial.number}"
    values: dict[str, Any] = {k: ("null" if v is None else v) for k, v in trial.params.items()}
    values["state"] = STATE_NAMES[trial.state]
    domains = {
        key: list(param.choices)
        for key, param in spec.search.items()
        if param.kind == "categorical" and all(type(c) is type(values.get(key)) for c in param.choices)
    }
    steps = int(trial.user_attrs.get("steps", 0))
    experiment, start, end = hparams(values, {spec.objective: trial.value}, hparam_domain_discrete=domains)
    with SummaryWriter(log_dir=str(folder)) as writer:
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
        writer.add_scalar(spec.objective, trial.value, global_step=steps)
