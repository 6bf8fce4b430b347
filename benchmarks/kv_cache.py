"""Generation speed with and without the KV cache: tokens/s for the same greedy 500 tokens.

The model is the `shakespeare` preset (6 layers, 6 heads, 384 dims, context 256, 65-token
vocabulary: 10.7M parameters), randomly initialised: speed does not depend on the weights. 500
new tokens from a 1-token prompt cross the 256-token context, so the window slides too. Runs
alternate so drifts in machine load hit both alike; both must produce the same tokens.

    python benchmarks/kv_cache.py --new_tokens 500 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minigpt.generation import generate_tokens
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import GREEDY


def timed(model: GPT, new_tokens: int, use_cache: bool) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    steps = generate_tokens(model, torch.zeros(1, 1, dtype=torch.long), new_tokens, GREEDY, use_cache=use_cache)
    out = torch.stack(list(steps), dim=1)
    return new_tokens / (time.perf_counter() - start), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new_tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="shakespeare")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset(args.preset, vocab_size=65, dropout=0.0)).eval()
    print(
        f"model: preset {args.preset}, {model.num_parameters() / 1e6:.1f}M parameters, "
        f"context {model.config.block_size}; {args.new_tokens} new tokens, greedy, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    timed(model, 20, True)  # warm-up
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        outputs = {}
        for use_cache in (False, True):
            rate, outputs[use_cache] = timed(model, args.new_tokens, use_cache)
            rates[use_cache].append(rate)
            print(f"  run: {'with' if use_cache else 'without'} cache {rate:.1f} tokens/s", flush=True)
        assert torch.equal(outputs[True], outputs[False]), "cached and uncached greedy outputs differ"
    without, with_cache = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"{'':>14} {'tokens/s (median)':>18} {'runs':>30}")
    for name, use_cache in (("without cache", False), ("with cache", True)):
        runs = ", ".join(f"{r:.1f}" for r in rates[use_cache])
        print(f"{name:>14} {statistics.median(rates[use_cache]):>18.1f} {runs:>30}")
    print(f"speed-up: {with_cache / without:.1f}x (same tokens: yes)")


if __name__ == "__main__":
    main()
