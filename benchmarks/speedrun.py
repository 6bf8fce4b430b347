"""The CPU speedrun: the record recipe against pretrain-small, through `minigpt fit`, in turns.

    MINIGPT_DATA_DIR=../shared/data python benchmarks/speedrun.py --repeats 2
    python benchmarks/plot_loss_vs_time.py            # the picture, from this script's runs.json

Each repeat runs, one process at a time: nanoGPT's recipe (pretrain-small at nanoGPT's learning
rate, 1e-3 to 1e-4), pretrain-small, the previous record (pretrain-small-modern), the record
(configs/speedrun.yaml) and the record at half its steps (its schedule ends there: the time
it needs to reach val 1.60). For each: final validation loss on the full split, bits per
character, wall time from process start to exit, and the time of the first validation at or
under 1.60 since the process started. The record's checkpoint is also evaluated over
64-character windows (pretrain-small's context), since a longer context lowers the loss by itself.

Runs land in benchmarks/out/speedrun/; runs.json lists them for plot_loss_vs_time.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

import modern_recipe  # the script beside this one
import yaml
from modern_recipe import QUIET, scalars

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "speedrun"
CONFIGS = REPO / "configs"
TARGET = 1.60
# name: (legend label, config, extra arguments)
RUNS: dict[str, tuple[str, Path, list[str]]] = {
    "nanogpt-lr": (
        "nanoGPT's recipe (pretrain-small at lr 1e-3)",
        CONFIGS / "pretrain-small.yaml",
        ["--model.learning_rate=1e-3", "--model.min_lr=1e-4"],
    ),
    "pretrain-small": ("pretrain-small (lr 3e-3)", CONFIGS / "pretrain-small.yaml", []),
    "pretrain-small-modern": ("previous record (pretrain-small-modern)", CONFIGS / "pretrain-small-modern.yaml", []),
    "speedrun": ("record (speedrun.yaml; a point per run length)", CONFIGS / "speedrun.yaml", []),
}
GROUPS = {"speedrun": "speedrun", "speedrun-half": "speedrun"}


def fit(name: str, config: Path, extra: list[str]) -> dict:
    """Run `minigpt fit` once and read back what it logged."""
    version, wall, started_at = modern_recipe.fit(name, config, extra, out=OUT)
    losses = scalars(version, "val/loss")
    reached = next((event for event in losses if event.value <= TARGET), None)
    return dict(
        name=name,
        version=str(version.relative_to(REPO)),
        started_at=started_at,
        wall=round(wall, 1),
        val=round(losses[-1].value, 4),
        bits_per_char=round(losses[-1].value / math.log(2), 4),
        time_to_target=None if reached is None else round(reached.wall_time - started_at, 1),
    )


def short_context_loss(version: str) -> float:
    """The checkpoint's validation loss over 64-character windows, pretrain-small's protocol."""
    checkpoint = REPO / version / "checkpoints" / "last.ckpt"
    root = OUT / "64"
    command = [sys.executable, "-m", "minigpt", "validate", f"--config={CONFIGS / 'speedrun.yaml'}", *QUIET]
    command += [f"--ckpt_path={checkpoint}", "--data.init_args.block_size=64", f"--trainer.default_root_dir={root}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    versions = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return scalars(versions[-1], "val/loss")[-1].value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    options = parser.parse_args()
    record_steps = _max_steps(CONFIGS / "speedrun.yaml")
    half = [f"--trainer.max_steps={record_steps // 2}", f"--trainer.val_check_interval={record_steps // 2}"]
    runs = {**RUNS, "speedrun-half": (RUNS["speedrun"][0], CONFIGS / "speedrun.yaml", half)}
    results: list[dict] = []
    for repeat in range(options.repeats):
        for name, (label, config, extra) in runs.items():
            result = {**fit(name, config, extra), "label": label, "repeat": repeat, "group": GROUPS.get(name, name)}
            results.append(result)
            print(json.dumps(result), flush=True)
    record = next(result for result in results if result["name"] == "speedrun")
    record["val_64"] = short_context_loss(record["version"])
    OUT.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    (OUT / "runs.json").write_text(json.dumps(dict(date=str(date.today()), machine=machine, runs=results), indent=1))
    print(f"\n| run | val loss | bits/char | wall time (s) | first val <= {TARGET} (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in runs:
        mine = [result for result in results if result["name"] == name]
        walls = ", ".join(f"{result['wall']:.1f}" for result in mine)
        reached = [result["time_to_target"] for result in mine if result["time_to_target"] is not None]
        first = f"{statistics.median(reached):.1f}" if reached else "never"
        print(f"| {name} | {mine[0]['val']:.4f} | {mine[0]['bits_per_char']:.4f} | {walls} | {first} |")
    small = statistics.median(result["wall"] for result in results if result["name"] == "pretrain-small")
    for name in ("speedrun", "speedrun-half"):
        wall = statistics.median(result["wall"] for result in results if result["name"] == name)
        print(f"{name}: {wall / small:.2f}x pretrain-small's wall time")
    print(f"record over 64-character windows: {record['val_64']:.4f} (its own context: {record['val']:.4f})")


def _max_steps(config: Path) -> int:
    return int(yaml.safe_load(config.read_text())["trainer"]["max_steps"])


if __name__ == "__main__":
    main()
