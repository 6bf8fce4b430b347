"""Shared by the experiments that train several runs: one `minigpt fit` and its last logged value."""

from __future__ import annotations

import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minigpt.cli import main


def run(root: Path, args: list[str]) -> tuple[Path, float]:
    """`minigpt fit ARGS` under `root`: the run's log folder and its wall time in seconds."""
    start = time.perf_counter()
    main([*args, f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false"])
    seconds = time.perf_counter() - start
    return sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))[-1], seconds


def last_scalar(version: Path, tag: str) -> float:
    events = EventAccumulator(str(version), size_guidance={"scalars": 0})
    events.Reload()
    return events.Scalars(tag)[-1].value
