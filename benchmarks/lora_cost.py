"""What LoRA saves on a CPU: full fine-tuning against LoRA of a GPT-2-small-sized model (124M
parameters, GPT-2's layout) and a SmolLM2-135M-shaped one (Llama's layout, 9 query heads over 3
key-value heads, 30 layers), random weights (the point is cost, not quality): time per step, the
peak memory of the process, and the size of the checkpoint each writes.

    MINIGPT_DATA_DIR=../shared/data python benchmarks/lora_cost.py

Each run is `minigpt fit` in a process of its own (the two recipes in turns, --repeats times),
from a Hugging Face directory written with random weights, on Tiny Shakespeare windows of 128
tokens, batch 4, for --steps steps with one validation (and checkpoint) at the end.
configs/finetune.yaml and configs/finetune-lora.yaml are the two recipes; only the data and the
step budget are overridden.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch
from fit_runs import median_scalar, run_process
from tokenizers import ByteLevelBPETokenizer

from minigpt.huggingface.export import export_model
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizers import PretrainedTokenizer

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MINIGPT_DATA_DIR", REPO.parent / "shared" / "data")) / "tinyshakespeare" / "input.txt"
SHAPES = {
    # GPT-2 small: 12 layers of 768, 12 heads, GPT-2's 50257-row vocabulary, tied head.
    "GPT-2 small (124M)": GPTConfig(
        vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, gelu="tanh", bias=True
    ),
    # HuggingFaceTB/SmolLM2-135M's layout and sizes.
    "SmolLM2-135M shape": GPTConfig(
        vocab_size=49152,
        block_size=8192,
        n_layer=30,
        n_head=9,
        n_kv_head=3,
        n_embd=576,
        bias=False,
        position="rope",
        rope_base=100000.0,
        norm="rmsnorm",
        mlp="swiglu",
        mlp_hidden=1536,
        tie_embeddings=True,
    ),
}
TOKENS_PER_STEP = 4 * 128


def random_model_directory(config: GPTConfig, folder: Path) -> Path:
    """A Hugging Face directory with `config`'s shape, random weights and a small BPE tokenizer
    (the model's vocabulary keeps its full size: the embedding's cost is part of the point)."""
    if (folder / "model.safetensors").is_file():
        return folder
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([DATA.read_text(encoding="utf-8")], vocab_size=2048, special_tokens=["<|endoftext|>"])
    tokenizer = PretrainedTokenizer.from_dict({"kind": "pretrained", "backend": json.loads(bpe._tokenizer.to_str())})
    torch.manual_seed(0)
    export_model(GPT(config), tokenizer, folder)
    return folder


def fine_tune(source: Path, recipe: str, root: Path, steps: int) -> tuple[float, float, float]:
    """(ms per step, peak RSS in MiB, checkpoint MiB) of `steps` steps of `recipe` from `source`."""
    measured = run_process(
        root,
        [
            "fit",
            f"--config={REPO / 'configs' / recipe}",
            f"--ckpt_path={source}",
            "--data=minigpt.data.TextDataModule",
            f"--data.path={DATA}",
            "--data.block_size=128",
            "--data.batch_size=4",
            "--data.max_val_windows=8",
            f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={steps}",
            "--trainer.log_every_n_steps=1",
            "--trainer.enable_model_summary=false",
            "--sample.tokens=0",
        ],
    )
    checkpoint = measured.version / "checkpoints" / "last.ckpt"
    step_ms = 1000 * TOKENS_PER_STEP / median_scalar(measured.version, "train/tokens_per_sec", skip=2)
    return step_ms, measured.peak_rss_mib, checkpoint.stat().st_size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each recipe, in turns (medians reported)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "lora_cost")
    options = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {options.steps} steps of {TOKENS_PER_STEP} tokens")
    print("| model | recipe | ms/step | peak RSS | checkpoint |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, config in SHAPES.items():
        slug = name.split(" ")[0].lower()
        source = random_model_directory(config, options.out / slug / "model")
        runs: dict[str, list[tuple[float, float, float]]] = {"finetune.yaml": [], "finetune-lora.yaml": []}
        for repeat in range(options.repeats):  # in turns, so that the machine's drift touches both alike
            for recipe, measured in runs.items():
                root = options.out / slug / f"{recipe.removesuffix('.yaml')}-{repeat}"
                measured.append(fine_tune(source, recipe, root, options.steps))
        results = {}
        for recipe, measured in runs.items():
            step_ms, rss, size = (statistics.median(values) for values in zip(*measured, strict=True))
            results[recipe] = (step_ms, rss, size)
            print(f"| {name} | {recipe} | {step_ms:.0f} | {rss:,.0f} MiB | {size:,.1f} MiB |", flush=True)
        (full_ms, full_rss, full_size), (lora_ms, lora_rss, lora_size) = results.values()
        print(
            f"| {name} | LoRA / full | {lora_ms / full_ms:.2f}x | {lora_rss / full_rss:.2f}x | "
            f"{lora_size / full_size:.2%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
