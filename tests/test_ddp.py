"""Data parallelism through Lightning's own DDP strategy: 2 CPU processes talking over gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import tiny_fit_args
from test_training import events, scalars

from minigpt.checkpoint import load_checkpoint
from minigpt.data import TextDataModule
from minigpt.module import LanguageModel

TESTS = Path(__file__).resolve().parent


def test_ddp_on_two_cpu_processes(corpus: Path, tmp_path: Path) -> None:
    probes = tmp_path / "probes"
    probes.mkdir()
    args = tiny_fit_args(
        corpus,
        max_steps=6,
        **{
            "trainer.strategy": "ddp",
            "trainer.accelerator": "cpu",
            "trainer.devices": 2,
            "trainer.val_check_interval": 6,
            "data.max_val_windows": 20,  # even: each rank evaluates 10, none padded twice
            "trainer.callbacks+": "probes.RankProbe",
        },
    )
    env = {**os.environ, "MINIGPT_PROBE_DIR": str(probes), "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [json.loads((probes / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Disjoint training windows: each rank draws from its own half of the tokens.
    (start0, stop0), (start1, stop1) = ranks[0]["shard"], ranks[1]["shard"]
    assert start0 == 0 and stop0 <= start1 < stop1
    assert ranks[0]["first_batch"] != ranks[1]["first_batch"]
    # Gradients are averaged across ranks, so the weights stay identical.
    weights = [torch.load(probes / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0)

    # One run folder, one TensorBoard log, one set of checkpoints, written by rank 0.
    runs = tmp_path / "lightning_logs"
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    assert len(list((runs / "version_0").glob("events.out.tfevents.*"))) == 1
    last = runs / "version_0" / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in last.parent.iterdir())[-1] == "last.ckpt"

    # Validation metrics are reduced over both ranks' halves of the windows: the logged loss is
    # the loss of the whole validation set, as one process computes it from the checkpoint.
    logged = scalars(runs / "version_0", "val/loss")[6]
    data = TextDataModule(path=str(corpus), block_size=32, batch_size=8, max_val_windows=20)
    module = LanguageModel.load_from_checkpoint(last)
    module.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in data.val_dataloader():
            total += LanguageModel.loss(module(inputs), targets, reduction="sum").item()
            count += targets.numel()
    assert abs(logged - total / count) < 1e-4
    assert load_checkpoint(last).tokenizer.vocab_size == data.vocab_size
    assert events(runs / "version_0").Tags()["scalars"]
