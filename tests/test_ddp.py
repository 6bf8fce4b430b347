"""Data parallelism through Lightning's own DDP strategy: CPU processes talking over gloo, on one
machine and as two machines on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import LINES, free_port, tiny_fit_args
from test_training import events, scalars

from minigpt.checkpoint import load_checkpoint
from minigpt.data import TextDataModule
from minigpt.module import LanguageModel

# Every test here starts processes: the slow tier.
pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
# Each DDP process may wait this long for the others; a test that hangs is a failure.
RUN_TIMEOUT = 600


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
    env.pop("OMP_NUM_THREADS", None)  # minigpt chooses the ranks' threads
    env["TMPDIR"] = str(tmp_path)  # a CPU registry of this test's own
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", *args], capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [json.loads((probes / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # The two ranks share the cores evenly: neither chose before it could see the other.
    assert ranks[0]["threads"] == ranks[1]["threads"]
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


def test_two_nodes_on_loopback_each_build_their_data_and_end_with_identical_weights(tmp_path: Path) -> None:
    # Two "machines" of one process each: their own folder, their own copy of the corpus, their own
    # data cache, and nothing shared but the rendezvous address, as under `torchrun --nnodes 2`.
    port = free_port()
    nodes = [tmp_path / f"node{rank}" for rank in (0, 1)]
    processes = []
    for rank, node in enumerate(nodes):
        (node / "probes").mkdir(parents=True)
        corpus = node / "corpus.txt"
        corpus.write_text("\n".join(LINES[i % len(LINES)] for i in range(300)))
        args = tiny_fit_args(
            corpus,
            max_steps=6,
            **{
                "trainer.strategy": "ddp",
                "trainer.accelerator": "cpu",
                "trainer.devices": 1,
                "trainer.num_nodes": 2,
                "trainer.val_check_interval": 6,
                "trainer.callbacks+": "probes.RankProbe",
            },
        )
        env = {
            **os.environ,
            "NODE_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "MINIGPT_CACHE_DIR": str(node / "cache"),
            "MINIGPT_PROBE_DIR": str(node / "probes"),
            "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path]),
        }
        command = [sys.executable, "-m", "minigpt", *args]
        processes.append(subprocess.Popen(command, cwd=node, env=env, stderr=subprocess.PIPE, text=True))
    try:
        errors = [process.communicate(timeout=RUN_TIMEOUT)[1] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, err in zip(processes, errors, strict=True):
        assert process.returncode == 0, err[-3000:]

    ranks = [json.loads((node / "probes" / f"rank{rank}.json").read_text()) for rank, node in enumerate(nodes)]
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
    assert ranks[0]["first_batch"] != ranks[1]["first_batch"]  # each its own half of the tokens
    weights = [torch.load(node / "probes" / f"rank{rank}.pt", weights_only=True) for rank, node in enumerate(nodes)]
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0)
    # Each machine tokenized its own copy into its own cache; only node 0 (global rank 0) writes the run.
    for node in nodes:
        assert len(list((node / "cache" / "tokens").glob("*/meta.json"))) == 1, node
    assert (nodes[0] / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert not (nodes[1] / "lightning_logs").exists()
