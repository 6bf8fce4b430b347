"""Train with a config and print the figures the README quotes: loss, tokens/s, wall time, MFU.

    python benchmarks/train_figures.py --config configs/pretrain-small.yaml
    python benchmarks/train_figures.py --config configs/pretrain.yaml        # on a GPU

Extra arguments go to `minigpt fit` unchanged (e.g. --trainer.max_steps=500). Runs land in
benchmarks/out/lightning_logs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minigpt.cli import main as minigpt_main

OUT = Path(__file__).resolve().parent / "out"


def latest_version(root: Path) -> Path:
    return max(root.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    options, fit_args = parser.parse_known_args()
    config = Path(options.config).resolve()
    OUT.mkdir(exist_ok=True)
    os.chdir(OUT)
    start = time.perf_counter()
    minigpt_main(["fit", f"--config={config}", "--trainer.enable_progress_bar=false", *fit_args])
    wall = time.perf_counter() - start

    version = latest_version(OUT / "lightning_logs")
    events = EventAccumulator(str(version), size_guidance={"scalars": 0})
    events.Reload()

    def series(tag: str) -> list[tuple[int, float]]:
        return [(e.step + 1, e.value) for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []

    val = series("val/loss")
    # The first logging window holds start-up costs (allocator warm-up, torch.compile); skip it.
    speeds = [v for _, v in series("train/tokens_per_sec")[1:]]
    mfu = [v for _, v in series("train/mfu")[1:]]
    print(f"config         : {config.name} {' '.join(fit_args)}")
    print(f"machine        : {machine()}")
    print(f"run            : {version}")
    print(f"wall time      : {wall:.1f} s (start-up, validation and checkpoints included)")
    print(f"tokens/s       : median {statistics.median(speeds):.0f} (min {min(speeds):.0f}, max {max(speeds):.0f})")
    if mfu:
        print(f"MFU            : median {100 * statistics.median(mfu):.1f}%")
    print(f"final val loss : {val[-1][1]:.4f} at step {val[-1][0]}")
    best_step, best = min(val, key=lambda item: item[1])
    print(f"best val loss  : {best:.4f} at step {best_step}")
    bpc = series("val/bits_per_char")
    if bpc:
        print(f"bits/char      : {bpc[-1][1]:.4f}")


if __name__ == "__main__":
    main()
