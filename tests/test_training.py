from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_fit_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main
from minigpt.generation import TextGenerator
from minigpt.module import LanguageModel
from minigpt.sampling import Sampling


def events(version: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(version), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(version: Path, tag: str) -> dict[int, float]:
    """Values by optimizer steps done (Lightning's logger step counts from 0 at the first batch)."""
    return {event.step + 1: event.value for event in events(version).Scalars(tag)}


def test_fit_lowers_the_loss_and_logs_to_tensorboard(corpus: Path, tmp_path: Path) -> None:
    main(tiny_fit_args(corpus, max_steps=40))
    version = tmp_path / "lightning_logs" / "version_0"
    logged = events(version)
    tags = set(logged.Tags()["scalars"])
    expected = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_sec", "val/loss", "val/perplexity"}
    assert expected | {"val/bits_per_char"} <= tags
    train_loss = scalars(version, "train/loss")
    val_loss = scalars(version, "val/loss")
    assert train_loss[max(train_loss)] < train_loss[min(train_loss)] - 1.0
    assert val_loss[40] < val_loss[10]
    # Perplexity is exp(loss); a character tokenizer makes bits/char = loss / ln 2.
    perplexity = scalars(version, "val/perplexity")[40]
    assert perplexity == pytest.approx(torch.tensor(val_loss[40]).exp().item(), rel=1e-4)
    assert scalars(version, "val/bits_per_char")[40] == pytest.approx(val_loss[40] / 0.693147, rel=1e-4)
    samples = logged.Tensors("sample/text_summary")
    # At the very steps of the validation scalars, so TensorBoard shows them together.
    assert [s.step for s in samples] == [e.step for e in logged.Scalars("val/loss")] == [9, 19, 29, 39]
    assert "ROMEO:" in samples[-1].tensor_proto.string_val[0].decode()
    lrs = scalars(version, "train/lr")
    assert lrs[5] == pytest.approx(3e-3, rel=0.2) and lrs[40] == pytest.approx(1e-4, rel=0.05)


def test_checkpoint_generates_what_the_trained_model_generates(corpus: Path, tmp_path: Path) -> None:
    main(tiny_fit_args(corpus, max_steps=20))
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert len(list(checkpoints.glob("best-step*-val*.ckpt"))) == 1
    module = LanguageModel.load_from_checkpoint(checkpoints / "last.ckpt")
    assert module.tokenizer is not None
    loaded = load_checkpoint(checkpoints / "last.ckpt")
    sampling = Sampling(temperature=0.8, top_k=10)
    in_memory = TextGenerator(module.model, module.tokenizer).generate("ROMEO:", 60, sampling, seed=3)[0]
    from_file = loaded.generate("ROMEO:", 60, sampling, seed=3)[0]
    assert from_file == in_memory
    assert len(from_file) == 60


def test_resumed_run_continues_the_same_curve(corpus: Path, tmp_path: Path) -> None:
    # The cosine schedule is pinned to 40 steps so the short run and the long run share it.
    full = tiny_fit_args(corpus, max_steps=40, **{"model.lr_decay_steps": 40})
    main(full)
    main(tiny_fit_args(corpus, max_steps=20, **{"model.lr_decay_steps": 40}))
    last = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 20
    main([*full, f"--ckpt_path={last}"])
    uninterrupted = scalars(tmp_path / "lightning_logs" / "version_0", "train/loss")
    resumed = scalars(tmp_path / "lightning_logs" / "version_2", "train/loss")
    assert min(resumed) == 21 and max(resumed) == 40
    for step in range(21, 41):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-5), step


def test_bigram_baseline_trains_from_yaml_choice(corpus: Path, tmp_path: Path) -> None:
    main(tiny_fit_args(corpus, max_steps=20, **{"model.arch": "bigram", "model.learning_rate": 0.05}))
    loaded = load_checkpoint(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    assert loaded.arch == "bigram"
    assert sum(p.numel() for p in loaded.model.parameters()) == loaded.tokenizer.vocab_size**2
