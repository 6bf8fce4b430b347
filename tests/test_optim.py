from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_fit_args
from test_training import scalars

from minigpt.bigram import BigramConfig, BigramLM
from minigpt.cli import main
from minigpt.model import GPT, GPTConfig
from minigpt.optim import SCHEDULES, adamw_groups


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_warms_up_then_ends_where_it_should(name: str) -> None:
    schedule = SCHEDULES[name]
    assert schedule(0, 10, 100, 0.1) == pytest.approx(1 / 11)
    assert schedule(10, 10, 100, 0.1) == pytest.approx(1.0)
    end = 1.0 if name == "constant" else 0.1
    assert schedule(100, 10, 100, 0.1) == pytest.approx(end) and schedule(500, 10, 100, 0.1) == pytest.approx(end)
    assert all(schedule(s, 10, 100, 0.1) >= schedule(s + 1, 10, 100, 0.1) for s in range(10, 120))


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_a_cooldown_holds_the_peak_then_decays_over_the_last_part_of_the_run(name: str) -> None:
    schedule = SCHEDULES[name]
    # Warmup 10, decay until step 110, the last 40% of the 100 steps after the warmup: from 50.
    assert [schedule(s, 10, 110, 0.1, 0.4) for s in (10, 30, 50)] == pytest.approx([1.0, 1.0, 1.0])
    assert schedule(80, 10, 110, 0.1, 0.4) == pytest.approx(schedule(35, 10, 110, 0.1, 1.0)) != 1.0
    assert schedule(110, 10, 110, 0.1, 0.4) == pytest.approx(0.1) == schedule(200, 10, 110, 0.1, 0.4)


@pytest.mark.parametrize(
    "model", [GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)), BigramLM(BigramConfig(11))]
)
def test_parameter_roles_cover_every_parameter_once(model: GPT | BigramLM) -> None:
    groups = adamw_groups(model.parameter_roles(), weight_decay=0.1)
    grouped = [id(param) for group in groups for param in group["params"]]
    assert sorted(grouped) == sorted(id(param) for param in model.parameters())
    assert all(param.dim() >= 2 for param in groups[0]["params"])  # only matrices and embeddings decay


@pytest.mark.slow
def test_lr_schedule_is_chosen_in_the_config(corpus: Path, tmp_path: Path) -> None:
    overrides = {"model.lr_schedule": "linear", "model.min_lr": 3e-4, "model.warmup_steps": 0}
    main(tiny_fit_args(corpus, max_steps=10, **overrides))
    lrs = scalars(tmp_path / "lightning_logs" / "version_0", "train/lr")
    # Logged after each step: a straight line from 3e-3 to 3e-4 over 10 steps.
    assert lrs[5] == pytest.approx(3e-3 - 2.7e-3 * 5 / 10, rel=1e-3)
    assert lrs[10] == pytest.approx(3e-4, rel=1e-3)


@pytest.mark.slow
def test_muon_trains_from_the_config_and_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    muon = {"model.optimizer": "muon", "model.muon_lr": 0.02, "model.lr_decay_steps": 20}
    full = train_interrupted_and_resumed(corpus, tmp_path, muon)
    assert full[20] < full[1] - 0.5


@pytest.mark.slow
def test_the_speedrun_options_train_under_bf16_on_a_cpu_and_resume_exactly(corpus: Path, tmp_path: Path) -> None:
    """configs/speedrun.yaml's options together: bf16-mixed on a CPU, value embeddings, Muon with
    bfloat16 Newton-Schulz, a warmup-stable-decay schedule."""
    record = {
        "trainer.precision": "bf16-mixed",
        "model.gpt.position": "rope",
        "model.gpt.value_embeddings": "true",
        "model.optimizer": "muon",
        "model.muon_ns_dtype": "bfloat16",
        "model.lr_cooldown": 0.5,
        "model.min_lr": 0.0,
        "model.lr_decay_steps": 20,
    }
    full = train_interrupted_and_resumed(corpus, tmp_path, record)
    lrs = scalars(tmp_path / "lightning_logs" / "version_0", "train/lr")
    assert full[20] < full[1] - 0.5
    assert lrs[5] == pytest.approx(lrs[10]) and lrs[20] == pytest.approx(0.0, abs=1e-9)  # flat, then down to 0


def train_interrupted_and_resumed(corpus: Path, tmp_path: Path, overrides: dict[str, object]) -> dict[int, float]:
    """20 steps straight, then 10 steps resumed to 20 from their checkpoint: the resumed run's
    losses must be the straight run's (the optimizer's state came back with the checkpoint).
    Returns the straight run's losses by step."""
    main(tiny_fit_args(corpus, max_steps=20, **overrides))
    main(tiny_fit_args(corpus, max_steps=10, **overrides))
    last = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    main([*tiny_fit_args(corpus, max_steps=20, **overrides), f"--ckpt_path={last}"])
    full = scalars(tmp_path / "lightning_logs" / "version_0", "train/loss")
    resumed = scalars(tmp_path / "lightning_logs" / "version_2", "train/loss")
    for step in range(11, 21):
        assert resumed[step] == pytest.approx(full[step], rel=1e-5), step
    return full


@pytest.mark.slow
def test_adamw_with_clipping_trains_under_bf16_mixed(corpus: Path, tmp_path: Path) -> None:
    """Every GPU config's combination (bf16-mixed by default there, AdamW, gradient clipping),
    here on a CPU: Lightning refuses to clip a fused optimizer's gradients under mixed precision."""
    main(tiny_fit_args(corpus, max_steps=20, **{"trainer.precision": "bf16-mixed"}))
    losses = scalars(tmp_path / "lightning_logs" / "version_0", "train/loss")
    assert losses[20] < losses[1] - 0.5
