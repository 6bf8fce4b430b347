"""Training recipes for Tiny Shakespeare (characters) on a CPU, compared per CPU-second.

A plain PyTorch loop (no Lightning: quick to iterate) around `minigpt.model.GPT` and either
fused AdamW or `minigpt.muon.MuonAdamW`. Data as nanoGPT splits it: the first 90% of the text
trains (random windows from a seeded numpy generator), the last 10% validates. Intermediate
evaluations use every 4th non-overlapping window of the validation split and are left out of
the clock; the final loss is over all of them. Threads: whatever OMP_NUM_THREADS says.

    python benchmarks/recipe_search.py --recipe baseline
    python benchmarks/recipe_search.py --recipe modern --seconds 150
    python benchmarks/recipe_search.py --recipe modern --set n_embd=192 --set qk_norm=false
    python benchmarks/recipe_search.py --recipe speedrun --clock wall --seconds 58
    python benchmarks/recipe_search.py --muon_timing

A run stops at `--steps` (or the recipe's steps) or, with `--seconds`, when that much training
time is spent; with `--seconds` the schedule runs on elapsed time, so a faster recipe gets more
steps in the same budget. Time is this process's CPU time unless `--clock wall`: on a shared
machine other processes stretch wall time by a varying factor but leave CPU time nearly alone
(with OMP_NUM_THREADS=1 the two agree on an idle machine). `--log FILE` appends each run's
recipe and results as a JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.model import GPT, GPTConfig
from minigpt.muon import muon_adamw
from minigpt.optim import adamw_groups

DATA = Path(os.environ.get("MINIGPT_DATA_DIR", "../shared/data")) / "tinyshakespeare" / "input.txt"
TARGET = 1.886  # nanoGPT's CPU recipe's val loss: time to reach it is one of the goals

# configs/pretrain-small.yaml: what every recipe is measured against.
BASELINE: dict[str, Any] = dict(
    n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, bias=False, dropout=0.0,
    optimizer="adamw", lr=3e-3, min_lr_ratio=0.1, warmup=100, schedule="cosine", cooldown=1.0,
    weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, steps=2000, decay_steps=0,
    muon_lr=0.0, gains_lr=0.0, momentum=0.95, ns_steps=5, ns_dtype="float32", seed=1337, precision="32",
)  # fmt: skip
RECIPES: dict[str, dict[str, Any]] = {
    "baseline": BASELINE,
    "baseline-lr1e-3": {**BASELINE, "lr": 1e-3},  # nanoGPT's learning rate (min_lr 1e-4)
    # The search's best per CPU-second (benchmarks/README.md, "Modern recipe search"): a smaller,
    # faster model with every modern option, Muon, context 128 and a flat-then-linear schedule.
    "modern": {
        **BASELINE,
        "n_layer": 3, "n_head": 3, "n_embd": 96, "block_size": 128, "batch_size": 6, "steps": 2600,
        "position": "rope", "norm": "rmsnorm", "qk_norm": True, "mlp": "swiglu", "tie_embeddings": False,
        "zero_init_proj": True, "optimizer": "muon", "muon_lr": 3e-3, "lr": 3e-3, "ns_dtype": "bfloat16",
        "schedule": "trapezoid", "cooldown": 0.5, "min_lr_ratio": 0.0,
    },
}  # fmt: skip
# The search that led to configs/speedrun.yaml (benchmarks/README.md, "CPU speedrun records"): the
# modern recipe wider, with value embeddings, bf16 products, batch 16 and learning rates 5e-3.
RECIPES["speedrun"] = {
    **RECIPES["modern"], "n_head": 4, "n_embd": 128, "batch_size": 16, "value_embeddings": True,
    "precision": "bf16-mixed", "muon_lr": 5e-3, "lr": 5e-3, "steps": 980,
}  # fmt: skip
MODEL_KEYS = {f.name for f in dataclasses.fields(GPTConfig)} - {"vocab_size"}


def parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if "," in text:
        return tuple(parse_value(part) for part in text.split(","))
    return text


def load_splits() -> tuple[torch.Tensor, torch.Tensor, int]:
    text = DATA.read_text(encoding="utf-8")
    vocabulary = {char: index for index, char in enumerate(sorted(set(text)))}
    ids = torch.tensor([vocabulary[char] for char in text], dtype=torch.long)
    cut = int(len(text) * 0.9)
    return ids[:cut], ids[cut:], len(vocabulary)


def val_windows(val: torch.Tensor, block_size: int, every: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows over the whole split (every `every`-th one), as inputs and targets."""
    count = (len(val) - 1) // block_size
    starts = torch.arange(0, count, every) * block_size
    rows = val[starts[:, None] + torch.arange(block_size + 1)]
    return rows[:, :-1], rows[:, 1:]


@torch.no_grad()
def evaluate(model: GPT, windows: tuple[torch.Tensor, torch.Tensor], batch_size: int = 64) -> float:
    model.eval()
    inputs, targets = windows
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size])
        total += F.cross_entropy(logits.flatten(0, 1), targets[start : start + batch_size].flatten(), reduction="sum")
    model.train()
    return float(total) / targets.numel()


def lr_multiplier(recipe: dict[str, Any], step: int, progress: float) -> float:
    """Linear warmup over `warmup` steps, then `cosine` decay to min_lr_ratio over the run, or
    `trapezoid`: flat, then linear decay to min_lr_ratio over the last `cooldown` of the run."""
    if step < recipe["warmup"]:
        return (step + 1) / (recipe["warmup"] + 1)
    low = recipe["min_lr_ratio"]
    if progress >= 1.0:
        return low
    if recipe["schedule"] == "cosine":
        return low + 0.5 * (1 - low) * (1 + math.cos(math.pi * min(progress, 1.0)))
    left = 1.0 - progress
    return low + (1 - low) * min(1.0, max(0.0, left / recipe["cooldown"]))


def build_optimizer(model: GPT, recipe: dict[str, Any]) -> torch.optim.Optimizer:
    roles = model.parameter_roles()
    if recipe["optimizer"] == "adamw":
        groups = adamw_groups(roles, recipe["weight_decay"])
        return torch.optim.AdamW(groups, lr=recipe["lr"], betas=tuple(recipe["betas"]), fused=True)
    return muon_adamw(
        roles,
        matrices_lr=recipe["muon_lr"],
        embeddings_lr=recipe["lr"],
        gains_lr=recipe["gains_lr"] or None,
        weight_decay=recipe["weight_decay"],
        momentum=recipe["momentum"],
        ns_steps=recipe["ns_steps"],
        ns_dtype=getattr(torch, recipe["ns_dtype"]),
        betas=tuple(recipe["betas"]),
    )


def train(
    recipe: dict[str, Any],
    seconds: float | None,
    eval_every: float,
    log: Path | None,
    stop_at_target: bool = False,
    clock: str = "cpu",
) -> dict[str, Any]:
    """Train one recipe; `seconds` and every time printed are on `clock`: "cpu" (this process's
    CPU time, which other processes on a shared machine do not inflate) or "wall"."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    train_ids, val_ids, vocab_size = load_splits()
    torch.manual_seed(recipe["seed"])
    config = GPTConfig(vocab_size=vocab_size, **{k: v for k, v in recipe.items() if k in MODEL_KEYS})
    model = GPT(config)
    optimizer = build_optimizer(model, recipe)
    initial = [group["lr"] for group in optimizer.param_groups]
    block, batch = recipe["block_size"], recipe["batch_size"]
    quick, full = val_windows(val_ids, block, every=4), val_windows(val_ids, block)
    rng = np.random.default_rng(recipe["seed"])
    offsets = torch.arange(block + 1)
    steps = recipe["steps"] if seconds is None else 10**9
    print(f"threads={torch.get_num_threads()} params={model.num_parameters():,} recipe={json.dumps(recipe)}")
    curve: list[tuple[int, float, float]] = []  # (step, training seconds, quick val loss)
    trained = wall = optimizer_seconds = 0.0  # training time only: evaluations are left out
    next_eval, step = eval_every, 0
    while step < steps and (seconds is None or trained < seconds):
        started, started_wall = now(), time.perf_counter()
        if recipe["decay_steps"]:  # a schedule of its own length, flat at its end after that
            progress = step / recipe["decay_steps"]
        else:
            progress = step / steps if seconds is None else trained / seconds
        for group, lr in zip(optimizer.param_groups, initial, strict=True):
            group["lr"] = lr * lr_multiplier(recipe, step, progress)
        starts = torch.from_numpy(rng.integers(0, len(train_ids) - block - 1, size=batch))
        rows = train_ids[starts[:, None] + offsets]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe["precision"] == "bf16-mixed"):
            logits = model(rows[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
        stepping = now()
        optimizer.step()
        optimizer_seconds += now() - stepping
        step += 1
        trained += now() - started
        wall += time.perf_counter() - started_wall
        done = step >= steps or (seconds is not None and trained >= seconds)
        if (trained / seconds if seconds else step / steps) >= next_eval - 1e-9 or done:
            next_eval += eval_every
            curve.append((step, trained, evaluate(model, quick)))
            print(f"step {step:5d}  {trained:7.1f} s  train {loss.item():.4f}  val~ {curve[-1][2]:.4f}", flush=True)
            if stop_at_target and curve[-1][2] <= TARGET:
                break
    final = evaluate(model, full)
    result = dict(
        clock=clock,
        steps=step,
        seconds=round(trained, 1),
        wall_seconds=round(wall, 1),
        ms_per_step=round(1000 * trained / step, 1),
        optimizer_share=round(optimizer_seconds / trained, 3),
        val_loss=round(final, 4),
        time_to_target=time_to(curve, TARGET),
        curve=[(s, round(t, 1), round(v, 4)) for s, t, v in curve],
    )
    print(
        f"final val {final:.4f} (full split, {len(full[0])} windows)  steps {step}  {trained:.1f} {clock} s "
        f"({wall:.1f} s wall)  {result['ms_per_step']} ms/step  optimizer step {100 * result['optimizer_share']:.0f}%  "
        f"time to {TARGET}: {result['time_to_target']} s"
    )
    if log is not None:
        with log.open("a") as out:
            out.write(json.dumps({"recipe": recipe, "seconds_budget": seconds, **result}) + "\n")
    return result


def time_to(curve: list[tuple[int, float, float]], target: float) -> float | None:
    """Training seconds at which the quick val loss first reaches `target`, linearly interpolated."""
    previous = (0.0, math.inf)
    for _, seconds, loss in curve:
        if loss <= target:
            if math.isinf(previous[1]):
                return round(seconds, 1)
            fraction = (previous[1] - target) / (previous[1] - loss)
            return round(previous[0] + fraction * (seconds - previous[0]), 1)
        previous = (seconds, loss)
    return None


def muon_timing(repeats: int = 20) -> None:
    """One optimizer step over pretrain-small's 16 block matrices: torch.optim.Muon (bfloat16
    Newton-Schulz, one matrix at a time) against MuonAdamW (batched, float32 or bfloat16)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, **{k: BASELINE[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}))
    matrices = model.parameter_roles()["matrices"]
    for param in matrices:
        param.grad = torch.randn_like(param)
    roles = {"matrices": matrices, "embeddings": [], "gains": []}
    candidates = {"torch.optim.Muon (bf16, per matrix)": torch.optim.Muon(matrices, adjust_lr_fn="match_rms_adamw")}
    for steps in (5, 4, 3):
        for dtype in (torch.float32, torch.bfloat16):
            name = f"MuonAdamW ns_steps={steps} {str(dtype).split('.')[-1]} (batched)"
            candidates[name] = muon_adamw(roles, 1e-3, 1e-3, ns_steps=steps, ns_dtype=dtype)
    print(f"threads={torch.get_num_threads()}, {len(matrices)} matrices of pretrain-small (4x128)")
    for name, optimizer in candidates.items():
        for _ in range(3):
            optimizer.step()
        started = time.perf_counter()
        for _ in range(repeats):
            optimizer.step()
        print(f"{name:45s} {1000 * (time.perf_counter() - started) / repeats:6.1f} ms/step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="modern", choices=sorted(RECIPES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps (default: the recipe's)")
    parser.add_argument("--seconds", type=float, default=None, help="train this many seconds instead of steps")
    parser.add_argument("--eval_every", type=float, default=0.05, help="fraction of the run between evaluations")
    parser.add_argument("--log", type=Path, default=None, help="append the run's results to this JSON-lines file")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what --seconds and timings count")
    parser.add_argument("--stop_at_target", action="store_true", help=f"stop once the quick val loss is {TARGET}")
    parser.add_argument("--muon_timing", action="store_true", help="time one Muon step instead of training")
    options = parser.parse_args()
    if options.muon_timing:
        muon_timing()
        return
    recipe = dict(RECIPES[options.recipe])
    for item in options.set:
        key, _, value = item.partition("=")
        if key not in recipe and key not in MODEL_KEYS:
            parser.error(f"unknown recipe key {key!r}")
        recipe[key] = parse_value(value)
    if options.steps is not None:
        recipe["steps"] = options.steps
    train(recipe, options.seconds, options.eval_every, options.log, options.stop_at_target, options.clock)


if __name__ == "__main__":
    main()
