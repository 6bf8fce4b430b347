"""The transfer experiment: Ace Attorney validation loss after the same step budget for
training from scratch and six ways of fine-tuning a Tiny Shakespeare checkpoint (full, frozen
parts, gradual unfreezing, LoRA at two ranks), with what each costs: trainable parameters,
checkpoint size, time per step and the peak memory of its process.

    python benchmarks/transfer.py                       # pretrains first (configs/pretrain-small.yaml)
    python benchmarks/transfer.py --pretrained X.ckpt   # reuses a pretraining checkpoint

Needs Tiny Shakespeare and Ace Attorney under $MINIGPT_DATA_DIR (the Makefile sets it when
../shared/data exists). Runs go to benchmarks/out/transfer/; the table and the samples are printed
as Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from fit_runs import Measured, last_scalar, median_scalar, run_process, scalars

from minigpt.checkpoint import load_checkpoint
from minigpt.sampling import DEFAULT_SAMPLING

REPO = Path(__file__).resolve().parents[1]
SMALL_SHAPE = ["--model.gpt.n_layer=4", "--model.gpt.n_head=4", "--model.gpt.n_embd=128", "--model.gpt.bias=false"]
PROMPT = "Phoenix:"
FREEZING = "minigpt.callbacks.freezing"  # the module of the freezing callbacks

# name -> (extra arguments, callbacks YAML or None)
VARIANTS: dict[str, tuple[list[str], dict | None]] = {
    # From scratch: pretrain-small's architecture and tuned learning rate, Ace Attorney's own vocabulary.
    "trained from scratch": (["--finetune=false", *SMALL_SHAPE, "--model.learning_rate=3e-3"], None),
    "full fine-tune": ([], None),
    "attention frozen": ([], {"class_path": f"{FREEZING}.FreezeLayers", "init_args": {"parts": ["attention"]}}),
    "head only": ([], {"class_path": f"{FREEZING}.FreezeLayers", "init_args": {"parts": ["all_but_head"]}}),
    "gradual unfreezing": ([], {"class_path": f"{FREEZING}.GradualUnfreezing", "init_args": {"every": 80}}),
    # configs/finetune-lora.yaml: adapters on every block's linear layers (and, as Ace Attorney
    # adds 22 characters, the token embedding, whose new rows could not learn otherwise).
    "LoRA rank 4": (
        [f"--config={REPO / 'configs/finetune-lora.yaml'}", "--model.lora.rank=4", "--model.lora.alpha=8"],
        None,
    ),
    "LoRA rank 16": (
        [f"--config={REPO / 'configs/finetune-lora.yaml'}", "--model.lora.rank=16", "--model.lora.alpha=32"],
        None,
    ),
}


def sample(ckpt: Path) -> str:
    loaded = load_checkpoint(ckpt)
    return PROMPT + loaded.generate(PROMPT, 200, DEFAULT_SAMPLING, seed=1)[0]


def trainable(measured: Measured) -> int:
    """Parameters the run trained: what a LoRA checkpoint holds, else what the run logged or all."""
    checkpoint = torch.load(measured.version / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)
    if "lora" in checkpoint["minigpt"]:
        return sum(tensor.numel() for tensor in checkpoint["state_dict"].values())
    # The freezing callbacks log their count; a run without one trains every parameter.
    try:
        logged = scalars(measured.version, "train/trainable_params")
    except KeyError:
        logged = []
    total = sum(tensor.numel() for name, tensor in checkpoint["state_dict"].items() if name != "model.lm_head.weight")
    return int(logged[-1]) if logged else total


def main_experiment() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", type=Path, help="Tiny Shakespeare checkpoint (default: pretrain one)")
    parser.add_argument("--steps", type=int, default=500, help="fine-tuning steps of every variant")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every run (default: minigpt's)")
    parser.add_argument("--only", nargs="*", default=None, help="run these variants only")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "transfer")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    pretrained = options.pretrained
    if pretrained is None:
        measured = run_process(options.out / "pretrain", ["fit", f"--config={REPO / 'configs/pretrain-small.yaml'}"])
        pretrained = measured.version / "checkpoints" / "last.ckpt"
        print(f"pretrained {pretrained} in {measured.seconds:.0f} s")
    rows, samples = [], {"Tiny Shakespeare checkpoint (before)": sample(pretrained)}
    for name, (extra, callback) in VARIANTS.items():
        if options.only is not None and name not in options.only:
            continue
        args = ["fit", f"--config={REPO / 'configs/finetune.yaml'}"]
        if callback is not None:
            callbacks = options.out / f"{name.replace(' ', '-')}.yaml"
            callbacks.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
            args.append(f"--config={callbacks}")
        args += [*extra, f"--trainer.max_steps={options.steps}"]
        if "--finetune=false" not in extra:
            args.append(f"--ckpt_path={pretrained}")
        measured = run_process(options.out / name.replace(" ", "-"), args, options.threads)
        checkpoint = measured.version / "checkpoints" / "last.ckpt"
        tokens_per_step = 12 * 64  # batch 12 of 64-character windows, as configured
        rows.append(
            (
                name,
                trainable(measured),
                last_scalar(measured.version, "val/loss"),
                checkpoint.stat().st_size / 2**20,
                1000 * tokens_per_step / median_scalar(measured.version, "train/tokens_per_sec"),
                measured.peak_rss_mib,
                measured.seconds,
            )
        )
        samples[name] = sample(checkpoint)
    print(f"\n{options.steps} steps each, Ace Attorney validation split (last 10%)\n")
    print("| run | trainable parameters | val loss | checkpoint | ms/step | peak RSS | wall time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, count, loss, size, step_ms, rss, seconds in rows:
        print(f"| {name} | {count:,} | {loss:.4f} | {size:.2f} MiB | {step_ms:.1f} | {rss:.0f} MiB | {seconds:.0f} s |")
    for name, text in samples.items():
        print(f"\n{name}:\n```\n{text}\n```")


if __name__ == "__main__":
    main_experiment()
