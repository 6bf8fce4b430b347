"""Where a training step's time goes on this CPU, against what its matrix multiplies could do.

    python benchmarks/flop_budget.py --config configs/pretrain-small.yaml
    python benchmarks/flop_budget.py --config configs/speedrun.yaml [--compile] [--profile]

Builds the config's GPT (Tiny Shakespeare's 65 characters), optimizer and batch shape in plain
PyTorch, then measures (medians over --steps steps):

- the step: forward with the loss, backward, clipping, optimizer step, and its achieved FLOP/s
  (the model's `flops_per_token`, PaLM's 6N + attention, times the batch's tokens);
- the ceiling: every matrix multiply of that step (each linear layer's forward and its two
  backward products, the attention's four batched products each way) timed alone at the same
  shapes and precision. Their summed time is what the step would take if it were nothing but
  matrix multiplies at this CPU's speed for those shapes; the step's FLOP/s over theirs is the
  fraction of the physical limit the step reaches;
- one validation over the whole split (111,540 characters) at the config's batch size, and its
  share of the run at the config's validation interval.

Threads: torch's default unless OMP_NUM_THREADS says otherwise (2 on the development machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from minigpt.lightning_cli import fit_parser
from minigpt.model import GPT, GPTConfig
from minigpt.optim import build_optimizer, optimizer_groups

VOCAB = 65
VAL_CHARACTERS = 111_540


def median_ms(work: Callable[[], Any], repeats: int) -> float:
    for _ in range(3):
        work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def matmul_ceiling_ms(model: GPT, rows: int, batch: int, block: int, dtype: torch.dtype, repeats: int) -> float:
    """Summed time of the step's matrix multiplies, each timed alone at its shape."""
    shapes = [module.weight.shape for module in model.modules() if isinstance(module, torch.nn.Linear)]
    total = 0.0
    for out_features, in_features in shapes:
        x, weight = torch.randn(rows, in_features, dtype=dtype), torch.randn(out_features, in_features, dtype=dtype)
        grad = torch.randn(rows, out_features, dtype=dtype)
        # The forward product, the gradient of the input, the gradient of the weight.
        for left, right in ((x, weight.T), (grad, weight), (grad.T, x)):
            total += median_ms(lambda left=left, right=right: left @ right, repeats)
    c = model.config
    heads, width = batch * c.n_head, c.head_width
    q, k = torch.randn(heads, block, width, dtype=dtype), torch.randn(heads, block, width, dtype=dtype)
    scores = torch.randn(heads, block, block, dtype=dtype)
    # Forward: q @ k^T and scores @ v; backward: two products for each of them.
    attention = median_ms(lambda: q @ k.mT, repeats) + median_ms(lambda: scores @ k, repeats)
    return total + 3 * c.n_layer * attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="also time the step with torch.compile")
    parser.add_argument("--profile", action="store_true", help="also list the step's most costly operators")
    options = parser.parse_args()
    # The config as `minigpt fit` resolves it: minigpt's own defaults fill what the file leaves out.
    config = fit_parser().parse_args([f"--config={options.config}"])
    hp, trainer = config.model, config.trainer
    block, batch = config.data.init_args.block_size, config.data.init_args.batch_size
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_dict({**hp.gpt.as_dict(), "vocab_size": VOCAB, "block_size": block}))
    groups = optimizer_groups(model.parameter_roles(), hp.optimizer, hp.learning_rate, hp.weight_decay, hp.muon_lr)
    bf16 = trainer.precision == "bf16-mixed"
    optimizer = build_optimizer(groups, hp.optimizer, tuple(hp.betas), getattr(torch, hp.muon_ns_dtype), bf16)
    autocast: Callable[[], AbstractContextManager[Any]] = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    )
    ids = torch.randint(0, VOCAB, (batch, block + 1))
    inputs, targets = ids[:, :-1], ids[:, 1:]

    def forward(network: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        with autocast():
            logits = network(inputs)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    losses: list[torch.Tensor] = []
    timings = {
        "forward + loss": lambda: losses.append(forward(model)),
        "backward": lambda: losses.pop().backward(),
        "clip": lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.gradient_clip_val),
        "optimizer": lambda: (optimizer.step(), optimizer.zero_grad(set_to_none=True)),
    }
    for _ in range(3):
        for work in timings.values():
            work()
    samples: dict[str, list[float]] = {part: [] for part in timings}
    for _ in range(options.steps):
        for part, work in timings.items():
            started = time.perf_counter()
            work()
            samples[part].append(time.perf_counter() - started)
    parts = {part: 1000 * statistics.median(values) for part, values in samples.items()}
    step_ms = sum(parts.values())
    tokens = batch * block
    flops = model.flops_per_token() * tokens
    dtype = torch.bfloat16 if bf16 else torch.float32
    ceiling_ms = matmul_ceiling_ms(model, tokens, batch, block, dtype, options.steps)
    shape = f"batch {batch} x {block}, {hp.optimizer}, {dtype}"
    print(f"{options.config.name}: {model.num_parameters():,} parameters, {shape}")
    print(f"threads {torch.get_num_threads()}, {model.flops_per_token() / 1e6:.2f} MFLOP per token")
    for part, ms in parts.items():
        print(f"  {part:15s} {ms:7.1f} ms  {100 * ms / step_ms:4.0f}%")
    speed = f"{tokens / step_ms * 1000:,.0f} tokens/s  {flops / step_ms / 1e6:.1f} GFLOP/s"
    print(f"step             {step_ms:7.1f} ms  {speed}")
    print(
        f"matmuls alone    {ceiling_ms:7.1f} ms  {flops / ceiling_ms / 1e6:.1f} GFLOP/s at these shapes: "
        f"the step reaches {100 * ceiling_ms / step_ms:.0f}% of it"
    )
    if options.profile:
        steps = 10
        with torch.profiler.profile() as profiler:
            for _ in range(steps):
                for work in timings.values():
                    work()
        print(f"operators by their own time, ms per step (torch.profiler, {steps} steps):")
        for event in sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]:
            print(f"  {event.key[:60]:60s} {event.self_cpu_time_total / 1000 / steps:6.1f} ms  x{event.count // steps}")
    model.eval()
    windows = VAL_CHARACTERS // block
    val_inputs = torch.randint(0, VOCAB, (batch, block))

    @torch.no_grad()
    def validate() -> None:
        for _ in range(0, windows, batch):
            with autocast():
                model(val_inputs)

    val_ms = median_ms(validate, 3)
    model.train()
    steps, interval = trainer.max_steps, trainer.val_check_interval
    if steps and interval:
        validations = steps // interval
        share = validations * val_ms / (validations * val_ms + steps * step_ms)
        print(
            f"validation       {val_ms / 1000:7.2f} s  ({windows} windows) x {validations} = "
            f"{100 * share:.0f}% of training + validation time"
        )
    if options.compile:
        compiled = torch.compile(model)
        started = time.perf_counter()
        forward(compiled).backward()
        compile_s = time.perf_counter() - started

        def compiled_step() -> None:
            forward(compiled).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        compiled_ms = median_ms(compiled_step, options.steps)
        print(
            f"torch.compile    {compiled_ms:7.1f} ms/step ({step_ms / compiled_ms:.2f}x eager) after "
            f"{compile_s:.1f} s of compilation = {compile_s * 1000 / (step_ms - compiled_ms):.0f} steps to pay it back"
        )


if __name__ == "__main__":
    main()
