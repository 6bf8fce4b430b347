"""The instruction-tuning experiment: Dolly-15k after a WikiText BPE pretraining, against the
same budget from scratch, scored on held-out instructions.

    python benchmarks/instruct.py                       # pretrains first (configs/pretrain-wikitext-small.yaml)
    python benchmarks/instruct.py --pretrained X.ckpt   # reuses a pretraining checkpoint

Both runs use configs/instruct-small.yaml, the pretrained checkpoint's tokenizer and
architecture; the run from scratch starts from random weights at the pretraining's learning
rate. Reported per run: validation loss on response tokens, ROUGE-L of greedy answers to the
first --records held-out instructions whose prompt fits the context, wall time, and sampled
answers to a few questions. Needs WikiText and Dolly under $MINIGPT_DATA_DIR (the Makefile sets
it when ../shared/data exists). Runs go to benchmarks/out/instruct/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fit_runs import last_scalar, run

from minigpt.callbacks.evaluation import answer_records, rouge_l
from minigpt.checkpoint import Checkpoint, load_checkpoint
from minigpt.data import Dolly
from minigpt.sampling import Sampling

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Who was Albert Einstein?",
]
# What a user would type: some randomness, repeats discouraged.
SAMPLING = Sampling(temperature=0.7, top_k=50, repetition_penalty=1.2)


def held_out_scores(loaded: Checkpoint, data: Dolly, records: int, max_new_tokens: int) -> tuple[float, float]:
    """ROUGE-L of greedy answers to held-out instructions, and their mean length in words."""
    triples = answer_records(loaded.model, data.tokenizer, data.style, data.val_records, records, max_new_tokens)
    return rouge_l(triples), sum(len(answer.split()) for _, answer, _ in triples) / len(triples)


def answers(loaded: Checkpoint) -> list[str]:
    return [loaded.generate(question, 96, SAMPLING, seed=1)[0].strip() for question in QUESTIONS]


def main_experiment() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", type=Path, help="WikiText BPE checkpoint (default: pretrain one)")
    parser.add_argument("--steps", type=int, help="instruction-tuning steps of both runs (default: the config's)")
    parser.add_argument("--records", type=int, default=100, help="held-out instructions scored with ROUGE-L")
    parser.add_argument("--max_new_tokens", type=int, default=96, help="longest greedy answer when scoring")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "instruct")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    pretrained = options.pretrained
    if pretrained is None:
        config = REPO / "configs" / "pretrain-wikitext-small.yaml"
        version, seconds = run(options.out / "pretrain", ["fit", f"--config={config}"])
        pretrained = version / "checkpoints" / "last.ckpt"
        print(f"pretrained {pretrained} in {seconds:.0f} s")
    start = load_checkpoint(pretrained)
    shape = start.model.config
    common = ["fit", f"--config={REPO / 'configs' / 'instruct-small.yaml'}"]
    if options.steps is not None:
        # Validated once, at the end: the table needs the last loss whatever the step count.
        common += [f"--trainer.max_steps={options.steps}", f"--trainer.val_check_interval={options.steps}"]
    variants = {
        "fine-tuned from WikiText": [f"--ckpt_path={pretrained}"],
        "from scratch": [
            "--finetune=false",
            f"--data.tokenizer_from={pretrained}",
            f"--model.gpt.n_layer={shape.n_layer}",
            f"--model.gpt.n_head={shape.n_head}",
            f"--model.gpt.n_embd={shape.n_embd}",
            f"--model.gpt.bias={str(shape.bias).lower()}",
            "--model.learning_rate=3e-3",
            "--model.min_lr=3e-4",
        ],
    }
    # The held-out records and their prompt style, encoded with the shared tokenizer.
    data = Dolly(
        block_size=shape.block_size, prompt_style="alpaca-short", val_fraction=0.02, tokenizer_from=str(pretrained)
    )
    data.prepare()
    before = held_out_scores(start, data, options.records, options.max_new_tokens)
    rows: list[tuple[str, float | None, tuple[float, float], float | None]] = [
        ("WikiText checkpoint, not instruction-tuned", None, before, None)
    ]
    samples = {}
    for name, extra in variants.items():
        version, seconds = run(options.out / name.replace(" ", "-"), [*common, *extra])
        tuned = load_checkpoint(version / "checkpoints" / "last.ckpt")
        scores = held_out_scores(tuned, data, options.records, options.max_new_tokens)
        rows.append((name, last_scalar(version, "val/loss"), scores, seconds))
        samples[name] = answers(tuned)
    scored = data.val_records[: options.records]
    reference_words = sum(len(record.response.split()) for record in scored) / len(scored)
    print(f"\nDolly-15k, {len(data.val_records)} held-out records; greedy answers to the first {len(scored)}")
    print(f"(up to {options.max_new_tokens} tokens; their reference responses average {reference_words:.0f} words)\n")
    print("| run | val loss (responses) | ROUGE-L | answer words | s |\n| --- | --- | --- | --- | --- |")
    for name, loss, (rouge, words), seconds in rows:
        loss_text, seconds_text = ("-", "-") if loss is None else (f"{loss:.4f}", f"{seconds:.0f}")
        print(f"| {name} | {loss_text} | {rouge:.4f} | {words:.0f} | {seconds_text} |")
    for name, texts in samples.items():
        print(
            f"\n{name} (temperature {SAMPLING.temperature}, top_k {SAMPLING.top_k}, repetition penalty "
            f"{SAMPLING.repetition_penalty}, seed 1):"
        )
        for question, text in zip(QUESTIONS, texts, strict=True):
            print(f"\n> {question}\n```\n{text}\n```")


if __name__ == "__main__":
    main_experiment()
