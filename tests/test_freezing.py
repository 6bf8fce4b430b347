from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_fit_args
from test_training import scalars

from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main

# Every test here trains a model: the slow tier.
pytestmark = pytest.mark.slow


def finetune_with(corpus: Path, pretrained: Path, callback: dict, max_steps: int = 10) -> list[str]:
    """A fine-tune of the session's checkpoint on the same corpus, with `callback` set in YAML."""
    config = Path("callbacks.yaml")
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    args = tiny_fit_args(corpus, max_steps=max_steps, **{"model.learning_rate": 1e-2, "model.warmup_steps": 1})
    args = [a for a in args if not a.startswith(("--model.gpt.n_layer", "--model.gpt.n_head", "--model.gpt.n_embd"))]
    return [args[0], f"--config={config}", *args[1:], "--finetune=true", f"--ckpt_path={pretrained}"]


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, tensor in before.items() if not torch.equal(tensor, after[name])}


def tuned_weights(tmp_path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").model.state_dict()


@pytest.mark.parametrize(
    ("parts", "frozen"),
    [
        (["attention"], lambda name: ".attn." in name),
        (["all_but_head"], lambda name: name.startswith(("transformer.h.", "transformer.wpe"))),
        (["blocks[:1]", "embeddings"], lambda name: name.startswith(("transformer.h.0.", "transformer.w", "lm_head"))),
    ],
    ids=["attention", "all_but_head", "first_block_and_embeddings"],
)
def test_frozen_weights_stay_bit_identical(
    corpus: Path, pretrained: Path, tmp_path: Path, parts: list[str], frozen
) -> None:
    callback = {"class_path": "minigpt.callbacks.freezing.FreezeLayers", "init_args": {"parts": parts}}
    main(finetune_with(corpus, pretrained, callback))
    before = load_checkpoint(pretrained).model.state_dict()
    moved = changed(before, tuned_weights(tmp_path))
    assert {name for name in before if frozen(name)}.isdisjoint(moved)
    assert {name for name in before if not frozen(name)} == moved  # everything else trained
    logged = scalars(tmp_path / "lightning_logs" / "version_0", "train/trainable_params")
    model = load_checkpoint(pretrained).model
    trainable = sum(p.numel() for name, p in model.named_parameters() if not frozen(name))
    assert list(logged.values()) == [trainable]


def test_gradual_unfreezing_adds_a_block_every_k_steps(corpus: Path, pretrained: Path, tmp_path: Path) -> None:
    callback = {"class_path": "minigpt.callbacks.freezing.GradualUnfreezing", "init_args": {"every": 3, "lr": 2e-3}}
    main(finetune_with(corpus, pretrained, callback, max_steps=12))
    model = load_checkpoint(pretrained).model
    head = model.lm_head.weight.numel() + sum(p.numel() for p in model.transformer.ln_f.parameters())
    block = sum(p.numel() for p in model.transformer.h[0].parameters())
    logged = scalars(tmp_path / "lightning_logs" / "version_0", "train/trainable_params")
    # Logged at the step it happens (the logger's step is steps done; scalars() adds one).
    assert logged == {
        1: head,
        4: head + block,
        7: head + 2 * block,
        10: head + 2 * block + model.transformer.wpe.weight.numel(),
    }
    # Every part trained in the end, including the block unfrozen last.
    assert changed(model.state_dict(), tuned_weights(tmp_path)) == set(model.state_dict())


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (["attn"], "unknown layer part 'attn' to freeze; use any of embeddings, attention"),
        (["blocks[7]"], r"layer part 'blocks\[7\]' names blocks that do not exist: the model has 2"),
    ],
)
def test_bad_freeze_spec_is_one_line(
    corpus: Path, pretrained: Path, capsys: pytest.CaptureFixture, parts: list[str], message: str
) -> None:
    callback = {"class_path": "minigpt.callbacks.freezing.FreezeLayers", "init_args": {"parts": parts}}
    with pytest.raises(SystemExit) as exit:
        main(finetune_with(corpus, pretrained, callback))
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("minigpt: error: ")
    assert re.search(message, error), error


def test_resuming_gradual_unfreezing_is_refused(
    corpus: Path, pretrained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    callback = {"class_path": "minigpt.callbacks.freezing.GradualUnfreezing", "init_args": {"every": 3}}
    main(finetune_with(corpus, pretrained, callback, max_steps=5))
    tuned = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    resume = [a for a in finetune_with(corpus, tuned, callback, max_steps=10) if a != "--finetune=true"]
    with pytest.raises(SystemExit):
        main(resume)
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "minigpt: error: resuming a run that uses GradualUnfreezing is not supported; start the fine-tune again"
        )
    )
