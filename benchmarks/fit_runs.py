"""Shared by the experiments that train several runs: one `minigpt fit`, its last logged value,
and what a run cost (wall time, peak memory of its process)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minigpt.cli import main


def latest_version(root: Path) -> Path:
    return sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))[-1]


def run(root: Path, args: list[str]) -> tuple[Path, float]:
    """`minigpt fit ARGS` under `root`, in this process: the run's log folder and its wall time in seconds."""
    start = time.perf_counter()
    main([*args, f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false"])
    return latest_version(root), time.perf_counter() - start


@dataclass(frozen=True)
class Measured:
    version: Path
    seconds: float
    peak_rss_mib: float


def run_process(root: Path, args: list[str], threads: int | None = None) -> Measured:
    """`minigpt fit ARGS` under `root` in a process of its own, whose peak resident memory the
    operating system reports when it ends."""
    environment = dict(os.environ)
    if threads is not None:
        environment["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "minigpt", *args, f"--trainer.default_root_dir={root}"]
    command.append("--trainer.enable_progress_bar=false")
    start = time.perf_counter()
    process = subprocess.Popen(command, env=environment)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    return Measured(latest_version(root), seconds, usage.ru_maxrss / 1024)  # Linux reports KiB


def scalars(version: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(version), size_guidance={"scalars": 0})
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


def last_scalar(version: Path, tag: str) -> float:
    return scalars(version, tag)[-1]


def median_scalar(version: Path, tag: str, skip: int = 1) -> float:
    """The median of a scalar's points after the first `skip` (start-up)."""
    values = scalars(version, tag)
    return statistics.median(values[skip:] or values)
