"""The modern CPU recipe against pretrain-small, through `minigpt fit`, side by side.

    MINIGPT_DATA_DIR=../shared/data python benchmarks/modern_recipe.py compare --repeats 2
    MINIGPT_DATA_DIR=../shared/data python benchmarks/modern_recipe.py target
    MINIGPT_DATA_DIR=../shared/data python benchmarks/modern_recipe.py ablate

compare: configs/pretrain-small.yaml and configs/pretrain-small-modern.yaml in turns: final
    validation loss on the full validation split, and wall time (process start to exit).
target: the time each run takes to reach validation loss 1.886 (nanoGPT's CPU recipe's final
    loss): pretrain-small with nanoGPT's learning rate (1e-3 to 1e-4) against the modern recipe,
    validating every 100 steps on the full split; the time is the validation's log time since
    the process started, validation time included.
ablate: the modern recipe with each of its options set back to GPT-2's, one at a time (and the
    one option left out of it added): final validation loss and ms/step (the median of
    train/tokens_per_sec turned into step time).

Runs land in benchmarks/out/modern_recipe/.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "modern_recipe"
BASELINE, MODERN = REPO / "configs" / "pretrain-small.yaml", REPO / "configs" / "pretrain-small-modern.yaml"
TARGET = 1.886
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# Each option of the modern recipe, set back to GPT-2's (and Muon back to AdamW).
ABLATIONS = {
    "AdamW instead of Muon": ["--model.optimizer=adamw"],
    "learned positions instead of rotary": ["--model.gpt.position=learned"],
    "LayerNorm instead of RMSNorm": ["--model.gpt.norm=layernorm"],
    "no QK-norm": ["--model.gpt.qk_norm=false"],
    "GELU MLP instead of SwiGLU": ["--model.gpt.mlp=gelu"],
    "ReLU² MLP instead of SwiGLU": ["--model.gpt.mlp=relu2"],
    "tied head": ["--model.gpt.tie_embeddings=true"],
    "no zero-init projections": ["--model.gpt.zero_init_proj=false"],
    "with logit soft-cap 15 (not in the recipe)": ["--model.gpt.logit_softcap=15"],
}


def fit(name: str, config: Path, extra: list[str], out: Path = OUT) -> tuple[Path, float, float]:
    """Run `minigpt fit` in out/name; its run folder, wall time, and its start as a Unix time."""
    root = out / name
    started_at, started = time.time(), time.perf_counter()
    command = [sys.executable, "-m", "minigpt", "fit", f"--config={config}", *QUIET, *extra]
    subprocess.run([*command, f"--trainer.default_root_dir={root}"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    versions = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1], wall, started_at


def scalars(version: Path, tag: str) -> list:
    events = EventAccumulator(str(version), size_guidance={"scalars": 0})
    events.Reload()
    return events.Scalars(tag)


def ms_per_step(version: Path, batch_tokens: int) -> float:
    speeds = [event.value for event in scalars(version, "train/tokens_per_sec")[1:]]
    return 1000 * batch_tokens / statistics.median(speeds)


def compare(repeats: int) -> None:
    results: dict[str, list[tuple[float, float]]] = {"pretrain-small": [], "pretrain-small-modern": []}
    for repeat in range(repeats):
        for name, config in (("pretrain-small", BASELINE), ("pretrain-small-modern", MODERN)):
            version, wall, _ = fit(f"compare/{name}", config, [])
            loss = scalars(version, "val/loss")[-1].value
            results[name].append((loss, wall))
            print(f"repeat {repeat}: {name}: val {loss:.4f}, {wall:.1f} s", flush=True)
    walls = {name: statistics.median(wall for _, wall in runs) for name, runs in results.items()}
    for name, runs in results.items():
        print(f"{name}: val {', '.join(f'{loss:.4f}' for loss, _ in runs)}; wall {walls[name]:.1f} s (median)")
    print(f"wall time ratio modern / small: {walls['pretrain-small-modern'] / walls['pretrain-small']:.2f}")


def time_to_target(name: str, config: Path, extra: list[str]) -> tuple[float, bool]:
    """Seconds from the start to the first validation at or under TARGET (reached: True), or to
    the last validation of a run that never got there (reached: False)."""
    version, _, started_at = fit(f"target/{name}", config, ["--trainer.val_check_interval=100", *extra])
    validations = scalars(version, "val/loss")
    for event in validations:
        if event.value <= TARGET:
            print(f"{name}: val {event.value:.4f} <= {TARGET} at step {event.step + 1}", flush=True)
            return event.wall_time - started_at, True
    last = validations[-1]
    print(f"{name}: never <= {TARGET}; last val {last.value:.4f} at step {last.step + 1}", flush=True)
    return last.wall_time - started_at, False


def target() -> None:
    nanogpt_lr = ["--model.learning_rate=1e-3", "--model.min_lr=1e-4"]
    baseline, baseline_reached = time_to_target("pretrain-small-lr1e-3", BASELINE, nanogpt_lr)
    modern, modern_reached = time_to_target("pretrain-small-modern", MODERN, [])
    print(f"pretrain-small, lr 1e-3: {baseline:.1f} s after start{'' if baseline_reached else ' (its end)'}")
    print(f"pretrain-small-modern: {modern:.1f} s after start{'' if modern_reached else ' (its end)'}")
    if modern_reached:
        bound = "" if baseline_reached else "< "
        print(f"time to {TARGET}: modern / baseline {bound}{modern / baseline:.2f}")


def ablate() -> None:
    import yaml

    data = yaml.safe_load(MODERN.read_text())["data"]["init_args"]
    batch_tokens = data["block_size"] * data["batch_size"]
    print("| recipe | val loss | ms/step |")
    print("| --- | ---: | ---: |")
    for name, extra in {"full modern recipe": [], **ABLATIONS}.items():
        version, _, _ = fit(f"ablate/{name.replace(' ', '_')}", MODERN, extra)
        loss = scalars(version, "val/loss")[-1].value
        print(f"| {name} | {loss:.4f} | {ms_per_step(version, batch_tokens):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["compare", "target", "ablate"])
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    if options.what == "compare":
        compare(options.repeats)
    elif options.what == "target":
        target()
    else:
        ablate()


if __name__ == "__main__":
    main()
