"""Draw validation loss against wall-clock time for several `minigpt fit` runs, into a PNG.

    python benchmarks/plot_loss_vs_time.py [--runs RUNS_JSON] [--out PNG]

RUNS_JSON defaults to benchmarks/out/speedrun/runs.json, PNG to docs/img/loss-vs-time.png.

The runs file lists the runs: {"date", "machine", "runs": [{"name", "label", "version",
"started_at", "wall", ...}]}, where `version` is a run folder holding TensorBoard logs (relative
to the repository root, or absolute) and `started_at` the Unix time its process started. Of a
name listed several times (repeats), only the first run is drawn. Each point is a validation's
`val/loss`, at its log time since the process started, validation time included. Runs that share
a `group` (one recipe trained to several lengths) are drawn as one line through each run's last
validation.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.typing import ColorType
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "benchmarks" / "out" / "speedrun" / "runs.json"
OUT = REPO / "docs" / "img" / "loss-vs-time.png"
TARGETS = (1.50, 1.60)
REFERENCE = "pretrain-small"
# The first validations sit far above the rest (an untrained model's ~4.2); clipping them keeps the
# part where the runs differ readable.
Y_LIMITS = (1.4, 2.6)


@dataclass(frozen=True)
class Run:
    name: str
    label: str
    version: Path
    started_at: float
    wall: float
    group: str


def load_runs(path: Path) -> tuple[dict[str, Any], list[Run]]:
    """The runs file's contents and its runs, the first of each name only."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such runs file") from None
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path}: not JSON ({error})") from None
    runs: dict[str, Run] = {}
    try:
        for entry in data["runs"]:
            if entry["name"] not in runs:
                version = Path(entry["version"])
                runs[entry["name"]] = Run(
                    name=entry["name"],
                    label=entry["label"],
                    version=version if version.is_absolute() else REPO / version,
                    started_at=float(entry["started_at"]),
                    wall=float(entry["wall"]),
                    group=str(entry.get("group", entry["name"])),
                )
    except (KeyError, TypeError, ValueError) as error:
        raise SystemExit(f"{path}: a run lacks a field or has a bad value ({error!r})") from None
    if not runs:
        raise SystemExit(f"{path}: lists no runs")
    return data, list(runs.values())


def val_curve(run: Run) -> tuple[list[float], list[float]]:
    """Seconds since the run's process started, and the validation loss, at each validation."""
    if not run.version.is_dir():
        raise SystemExit(f"{run.version}: no such run folder (run {run.name!r})")
    events = EventAccumulator(str(run.version), size_guidance={"scalars": 0})
    events.Reload()
    if "val/loss" not in events.Tags()["scalars"]:
        raise SystemExit(f"{run.version}: no val/loss in its TensorBoard logs (run {run.name!r})")
    scalars = events.Scalars("val/loss")
    return [event.wall_time - run.started_at for event in scalars], [event.value for event in scalars]


def draw(axes: Axes, runs: list[Run]) -> None:
    colors: dict[str, ColorType] = {}
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    for members in groups.values():
        if len(members) == 1:
            seconds, losses = val_curve(members[0])
        else:
            ends = sorted((curve[0][-1], curve[1][-1]) for curve in map(val_curve, members))
            seconds, losses = [end[0] for end in ends], [end[1] for end in ends]
        label = f"{members[0].label}: val {losses[-1]:.4f}"
        (line,) = axes.plot(seconds, losses, marker="o", markersize=3, label=label)
        for run in members:
            colors[run.name] = line.get_color()
    for target, style in zip(TARGETS, ("--", (0, (6, 3))), strict=True):
        axes.axhline(target, color="grey", linestyle=style, linewidth=1, label=f"target val {target:.2f}")
    reference = next((run for run in runs if run.name == REFERENCE), None)
    if reference is not None:
        axes.axvline(
            reference.wall, color=colors[REFERENCE], linestyle=":", linewidth=1.5, label=f"{REFERENCE}'s wall time"
        )


def plot(runs: list[Run], machine: str, date: str, out: Path) -> None:
    figure = Figure(figsize=(10, 6), layout="constrained")
    FigureCanvasAgg(figure)  # files only, no display: the Agg canvas attaches itself to the figure
    axes = figure.add_subplot()
    draw(axes, runs)
    axes.set_ylim(*Y_LIMITS)
    axes.set_xlim(left=0)
    axes.set_title(f"Tiny Shakespeare val loss vs wall-clock time, {machine}, {date}")
    axes.set_xlabel("seconds since the process started")
    axes.set_ylabel("validation loss (nats/char, full split)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=150)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=RUNS, help="the runs file (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT, help="the PNG to write (default: %(default)s)")
    options = parser.parse_args(argv)
    data, runs = load_runs(options.runs)
    plot(runs, str(data.get("machine", "unknown machine")), str(data.get("date", "unknown date")), options.out)
    print(options.out)


if __name__ == "__main__":
    main()
