"""CPU runs that share the cores: pretrain-small alone and two at once, and DDP on CPU processes.

    MINIGPT_DATA_DIR=../shared/data python benchmarks/cpu_sharing.py --repeats 2

Every run is a `minigpt fit` process of configs/pretrain-small.yaml for 300 steps (progress bar
off, 48 validation windows); wall times include start-up. Scenarios take turns within each
repeat, so the machine's drift touches all of them alike. "torch's threads" pins every process
to torch's own thread count (`--cpu.threads`), which is what every run used before minigpt chose
threads itself. Runs land in benchmarks/out/cpu_sharing/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "cpu_sharing"
FIT = [
    "fit",
    f"--config={REPO / 'configs' / 'pretrain-small.yaml'}",
    "--trainer.max_steps=300",
    "--trainer.enable_progress_bar=false",
    "--data.max_val_windows=48",
]
TORCH_THREADS = torch.get_num_threads()
# name: (processes at once, extra arguments, extra environment, seconds between their starts)
SCENARIOS: dict[str, tuple[int, list[str], dict[str, str], float]] = {
    "one run alone, minigpt's threads": (1, [], {}, 0.0),
    "one run alone, torch's threads": (1, [f"--cpu.threads={TORCH_THREADS}"], {}, 0.0),
    "two runs at once, minigpt's threads": (2, [], {}, 0.0),
    # The first keeps the threads it started alone with; the second takes its share.
    "two runs, the second started 8 s after the first, minigpt's threads": (2, [], {}, 8.0),
    "two runs, the second started 8 s after the first, adaptive threads": (2, ["--cpu.adaptive=true"], {}, 8.0),
    "two runs at once, torch's threads": (2, [f"--cpu.threads={TORCH_THREADS}"], {}, 0.0),
    "two runs at once, OMP_NUM_THREADS=1": (2, [], {"OMP_NUM_THREADS": "1"}, 0.0),
    "two runs at once, OMP_WAIT_POLICY=PASSIVE, torch's threads": (
        2,
        [f"--cpu.threads={TORCH_THREADS}"],
        {"OMP_WAIT_POLICY": "PASSIVE"},
        0.0,
    ),
    "DDP, 2 processes": (1, ["--trainer.strategy=ddp", "--trainer.accelerator=cpu", "--trainer.devices=2"], {}, 0.0),
}


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    return {**env, **extra}


def run_together(name: str, repeat: int) -> tuple[list[float], list[Path]]:
    """Start the scenario's processes at once; each one's wall time and run folder."""
    count, extra, env, delay = SCENARIOS[name]
    folder = name.replace(" ", "_").replace(",", "").replace("'", "")
    roots = [OUT / folder / f"{repeat}-{i}" for i in range(count)]
    processes = []
    for index, root in enumerate(roots):
        if index:
            time.sleep(delay)
        root.mkdir(parents=True, exist_ok=True)
        log = (root / "stderr.txt").open("w")
        command = [sys.executable, "-m", "minigpt", *FIT, *extra, f"--trainer.default_root_dir={root}"]
        started = time.perf_counter()
        processes.append((subprocess.Popen(command, stdout=log, stderr=log, env=environment(env)), log, started))
    walls = []
    for process, log, started in processes:
        if process.wait() != 0:
            raise SystemExit(f"{name}: a run failed; see {log.name}")
        walls.append(time.perf_counter() - started)
        log.close()
    versions = [
        max((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1])) for root in roots
    ]
    return walls, versions


def tokens_per_second(version: Path) -> float:
    events = EventAccumulator(str(version), size_guidance={"scalars": 0})
    events.Reload()
    # The first window holds start-up costs; the rest are steady training.
    return statistics.median(event.value for event in events.Scalars("train/tokens_per_sec")[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS), metavar="NAME")
    options = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in options.scenarios}
    speeds: dict[str, list[float]] = {name: [] for name in options.scenarios}
    for repeat in range(options.repeats):
        for name in options.scenarios:
            seconds, versions = run_together(name, repeat)
            walls[name] += seconds
            speeds[name] += [tokens_per_second(version) for version in versions]
            print(f"repeat {repeat}: {name}: {', '.join(f'{s:.1f}' for s in seconds)} s", flush=True)
    print(f"\n{os.cpu_count()} cores, torch {torch.__version__}, torch's threads {TORCH_THREADS}")
    print("| what ran | wall time of each run (s) | median | tokens/s of each run (median) |")
    print("| --- | --- | ---: | ---: |")
    for name in options.scenarios:
        runs = ", ".join(f"{s:.1f}" for s in walls[name])
        print(f"| {name} | {runs} | {statistics.median(walls[name]):.1f} | {statistics.median(speeds[name]):,.0f} |")
    alone = "one run alone, minigpt's threads"
    if alone in walls:
        for name in options.scenarios:
            ratio = statistics.median(walls[name]) / statistics.median(walls[alone])
            print(f"{name}: {ratio:.2f}x the wall time of one run alone")


if __name__ == "__main__":
    main()
