"""minigpt predict: a file of prompts completed in batches through Lightning's predict loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main
from minigpt.sampling import Sampling

# Every test here runs `minigpt predict` on a trained model: the slow tier.
pytestmark = pytest.mark.slow

PROMPTS = ["ROMEO:", "JULIET:\nO Romeo", "But soft, what light through yonder", "N"]


def predict(checkpoint: Path, prompts: Path, out: Path, *options: str) -> list[dict]:
    main(["predict", f"--ckpt_path={checkpoint}", f"--data.prompts={prompts}", f"--predictions.path={out}", *options])
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": prompt}) + "\n" for prompt in PROMPTS), encoding="utf-8")
    return path


def test_batched_answers_are_the_answers_one_by_one(pretrained: Path, prompt_file: Path, tmp_path: Path) -> None:
    greedy = ["--data.sampling.temperature=0", "--data.max_new_tokens=40"]
    batched = predict(pretrained, prompt_file, tmp_path / "batched.jsonl", *greedy, "--data.batch_size=4")
    alone = predict(pretrained, prompt_file, tmp_path / "alone.jsonl", *greedy, "--data.batch_size=1")
    assert batched == alone
    assert [record["prompt"] for record in batched] == PROMPTS and [r["index"] for r in batched] == [0, 1, 2, 3]
    # The same text `minigpt generate --temperature 0` gives (40 tokens would run past the 32-token context).
    checkpoint = load_checkpoint(pretrained)
    for record in batched:
        assert record["completion"] == checkpoint.generate(record["prompt"], 40, Sampling(temperature=0))[0]
        assert record["tokens"] == 40 and record["seed"] is None
    assert not (tmp_path / "lightning_logs").exists()  # answers only: no run folder


def test_seeded_sampling_does_not_depend_on_the_batch(pretrained: Path, prompt_file: Path, tmp_path: Path) -> None:
    sampled = ["--data.seed=7", "--data.max_new_tokens=20", "--data.sampling.temperature=1.0"]
    batched = predict(pretrained, prompt_file, tmp_path / "a.jsonl", *sampled, "--data.batch_size=3")
    alone = predict(pretrained, prompt_file, tmp_path / "b.jsonl", *sampled, "--data.batch_size=1")
    assert batched == alone and [record["seed"] for record in batched] == [7, 8, 9, 10]


def test_a_text_file_holds_one_prompt_per_line(pretrained: Path, tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("ROMEO:\n\nJULIET:\n", encoding="utf-8")
    records = predict(pretrained, path, tmp_path / "out.jsonl", "--data.max_new_tokens=5")
    assert [record["prompt"] for record in records] == ["ROMEO:", "JULIET:"]


def test_predict_without_a_checkpoint_or_prompts_is_one_line(
    pretrained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for args, message in (
        (
            ["predict", f"--data.prompts={tmp_path / 'none.txt'}", f"--ckpt_path={pretrained}"],
            "none.txt does not exist",
        ),
    ):
        with pytest.raises(SystemExit) as exit:
            main(args)
        assert exit.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("minigpt: error:")]
        assert len(errors) == 1 and message in errors[0]
