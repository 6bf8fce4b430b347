"""The transfer experiment: Ace Attorney validation loss after the same step budget for
training from scratch and four ways of fine-tuning a Tiny Shakespeare checkpoint.

    python benchmarks/transfer.py                       # pretrains first (configs/pretrain-small.yaml)
    python benchmarks/transfer.py --pretrained X.ckpt   # reuses a pretraining checkpoint

Needs Tiny Shakespeare and Ace Attorney under $MINIGPT_DATA_DIR (the Makefile sets it when
../shared/data exists). Runs go to benchmarks/out/transfer/; the table and the samples are printed
as Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from fit_runs import last_scalar, run

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
}


def sample(ckpt: Path) -> str:
    loaded = load_checkpoint(ckpt)
    return PROMPT + loaded.generate(PROMPT, 200, DEFAULT_SAMPLING, seed=1)[0]


def main_experiment() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", type=Path, help="Tiny Shakespeare checkpoint (default: pretrain one)")
    parser.add_argument("--steps", type=int, default=500, help="fine-tuning steps of every variant")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "transfer")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    pretrained = options.pretrained
    if pretrained is None:
        version, seconds = run(options.out / "pretrain", ["fit", f"--config={REPO / 'configs/pretrain-small.yaml'}"])
        pretrained = version / "checkpoints" / "last.ckpt"
        print(f"pretrained {pretrained} in {seconds:.0f} s")
    rows, samples = [], {"Tiny Shakespeare checkpoint (before)": sample(pretrained)}
    for name, (extra, callback) in VARIANTS.items():
        args = ["fit", f"--config={REPO / 'configs/finetune.yaml'}"]
        if callback is not None:
            callbacks = options.out / f"{name.replace(' ', '-')}.yaml"
            callbacks.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
            args.append(f"--config={callbacks}")
        args += [f"--trainer.max_steps={options.steps}", *extra]
        if "--finetune=false" not in extra:
            args.append(f"--ckpt_path={pretrained}")
        version, seconds = run(options.out / name.replace(" ", "-"), args)
        rows.append((name, last_scalar(version, "val/loss"), seconds))
        samples[name] = sample(version / "checkpoints" / "last.ckpt")
    print(f"\n{options.steps} steps each, Ace Attorney validation split (last 10%)\n")
    print("| run | val loss | s |\n| --- | --- | --- |")
    for name, loss, seconds in rows:
        print(f"| {name} | {loss:.4f} | {seconds:.0f} |")
    for name, text in samples.items():
        print(f"\n{name}:\n```\n{text}\n```")


if __name__ == "__main__":
    main_experiment()
