"""Training-step time on CPU in fp32 against bf16 autocast, for the pretrain-small model.

Why minigpt trains in fp32 on CPU. Prints ms/step for each, interleaved over repeats.

    python benchmarks/cpu_precision.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minigpt.model import GPT, GPTConfig
from minigpt.module import LanguageModel


def step_time(autocast: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    inputs, targets = torch.randint(0, 65, (2, 12, 64))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(inputs)
        loss = LanguageModel.loss(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    fp32, bf16 = [], []
    for _ in range(options.repeats):
        fp32.append(step_time(False, options.steps))
        bf16.append(step_time(True, options.steps))
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}, threads: {torch.get_num_threads()}")
    print(f"fp32          : {statistics.median(fp32):6.1f} ms/step")
    print(f"bf16 autocast : {statistics.median(bf16):6.1f} ms/step")
    print(f"bf16 / fp32   : {statistics.median(bf16) / statistics.median(fp32):.2f}x the time")


if __name__ == "__main__":
    main()
