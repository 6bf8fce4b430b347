"""The CPU choices minigpt makes, each measured against its alternative on the pretrain-small model.

fp32 vs bf16 autocast, fused vs foreach AdamW, exact vs tanh GELU. Prints ms per training step
for each variant, interleaved over repeats so machine drift hits all alike.

    python benchmarks/cpu_choices.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minigpt.model import GPT, GPTConfig
from minigpt.module import LanguageModel

# name: (bf16 autocast, fused AdamW, GELU)
VARIANTS = {
    "minigpt: fp32, fused AdamW, exact GELU": (False, True, "exact"),
    "bf16 autocast": (True, True, "exact"),
    "foreach AdamW": (False, False, "exact"),
    "tanh GELU": (False, True, "tanh"),
}


def step_time(autocast: bool, fused: bool, gelu: str, steps: int) -> float:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False, gelu=gelu)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused, foreach=None if fused else True)
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
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(options.repeats):
        for name, variant in VARIANTS.items():
            times[name].append(step_time(*variant, options.steps))
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}, threads: {torch.get_num_threads()}")
    baseline = statistics.median(next(iter(times.values())))
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:40s} {median:6.1f} ms/step  {median / baseline:5.2f}x")


if __name__ == "__main__":
    main()
