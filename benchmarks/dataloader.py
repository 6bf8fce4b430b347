"""Does data loading keep up with training? Time the train dataloader alone against one training step.

    python benchmarks/dataloader.py

Uses a token memmap the size of WikiText-103's train split at 8k BPE (~120M uint16 ids, random)
and the epoch-ordered loader of `minigpt.data.WikiText103`, at the shapes of
configs/pretrain-wikitext-small.yaml and configs/pretrain-wikitext.yaml. The training step is a
forward, backward and fused AdamW step of the matching GPT on this machine's CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from minigpt.data.windows import EpochWindowBatches
from minigpt.model import GPT, GPTConfig

OUT = Path(__file__).resolve().parent / "out"
SHAPES = {
    "pretrain-wikitext-small": dict(block_size=128, batch_size=16, n_layer=4, n_head=4, n_embd=128, vocab=2048),
    "pretrain-wikitext": dict(block_size=256, batch_size=64, n_layer=6, n_head=6, n_embd=384, vocab=8192),
}


def token_file(count: int) -> np.ndarray:
    path = OUT / f"random-tokens-{count}.bin"
    if not path.is_file() or path.stat().st_size != count * 2:
        OUT.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        with path.open("wb") as out:
            for start in range(0, count, 1 << 24):
                rng.integers(0, 8192, size=min(1 << 24, count - start), dtype=np.uint16).tofile(out)
    return np.memmap(path, dtype=np.uint16, mode="r")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def loader_ms(tokens: np.ndarray, block_size: int, batch_size: int, batches: int, workers: int) -> float:
    dataset = EpochWindowBatches(tokens, block_size, batch_size, seed=0)
    loader = iter(DataLoader(dataset, batch_size=None, num_workers=workers))
    next(loader)  # worker start-up is paid once per run, not per step
    samples = []
    for _ in range(batches):
        started = time.perf_counter()
        next(loader)
        samples.append(time.perf_counter() - started)
    return median_ms(samples)


def step_ms(shape: dict, steps: int) -> float:
    config = GPTConfig(
        vocab_size=shape["vocab"],
        block_size=shape["block_size"],
        n_layer=shape["n_layer"],
        n_head=shape["n_head"],
        n_embd=shape["n_embd"],
        dropout=0.0,
        bias=False,
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    ids = torch.randint(0, shape["vocab"], (shape["batch_size"], shape["block_size"] + 1))
    samples = []
    for step in range(steps + 1):
        started = time.perf_counter()
        logits = model(ids[:, :-1])
        F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:  # the first step allocates everything
            samples.append(time.perf_counter() - started)
    return median_ms(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=120_000_000)
    parser.add_argument("--batches", type=int, default=100)
    options = parser.parse_args()
    tokens = token_file(options.tokens)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads; {len(tokens) / 1e6:.0f}M-token memmap"
    )
    for name, shape in SHAPES.items():
        steps = 10 if shape["n_embd"] <= 128 else 3
        train = step_ms(shape, steps)
        for workers in (0, 2):
            load = loader_ms(tokens, shape["block_size"], shape["batch_size"], options.batches, workers)
            print(
                f"{name}: batch {shape['batch_size']}x{shape['block_size']}, loader ({workers} workers) "
                f"{load:.2f} ms/batch vs training step {train:.0f} ms: loading is {100 * load / train:.2f}% of a step"
            )


if __name__ == "__main__":
    main()
