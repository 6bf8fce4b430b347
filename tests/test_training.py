from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import tiny_fit_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from minigpt.callbacks.hparams import RunLogger
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


@pytest.mark.slow
def assert_resumed_on_the_same_curve(root: Path, first_step: int, last_step: int) -> None:
    """The third run under `root` (a resume) logged steps first_step..last_step with the losses
    of the first run (uninterrupted)."""
    uninterrupted = scalars(root / "lightning_logs" / "version_0", "train/loss")
    resumed = scalars(root / "lightning_logs" / "version_2", "train/loss")
    assert min(resumed) == first_step and max(resumed) == last_step
    for step in range(first_step, last_step + 1):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-5), step


@pytest.mark.slow
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


@pytest.mark.slow
def test_checkpoint_generates_what_the_trained_model_generates(pretrained: Path) -> None:
    checkpoints = pretrained.parent
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


@pytest.mark.slow
def test_resumed_run_continues_the_same_curve(corpus: Path, tmp_path: Path) -> None:
    # The cosine schedule is pinned to 40 steps so the short run and the long run share it.
    full = tiny_fit_args(corpus, max_steps=40, **{"model.lr_decay_steps": 40})
    main(full)
    main(tiny_fit_args(corpus, max_steps=20, **{"model.lr_decay_steps": 40}))
    last = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 20
    main([*full, f"--ckpt_path={last}"])
    assert_resumed_on_the_same_curve(tmp_path, first_step=21, last_step=40)


@pytest.mark.slow
def test_a_checkpoint_of_an_earlier_version_resumes(corpus: Path, tmp_path: Path) -> None:
    """Checkpoints written before model.gpt held the architecture as flat model.* values and a
    preset: the same command still resumes them, on the same curve."""
    full = tiny_fit_args(corpus, max_steps=20, **{"model.lr_decay_steps": 20})
    main(full)
    main(tiny_fit_args(corpus, max_steps=10, **{"model.lr_decay_steps": 20}))
    last = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    flat = {**checkpoint["hyper_parameters"].pop("gpt"), "preset": None}
    checkpoint["hyper_parameters"] |= {name: value for name, value in flat.items() if name != "block_size"}
    checkpoint["hyper_parameters"]["block_size"] = None  # linked from the data then
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    main([*full, f"--ckpt_path={old}"])
    assert_resumed_on_the_same_curve(tmp_path, first_step=11, last_step=20)


@pytest.mark.slow
def test_bigram_baseline_trains_from_yaml_choice(corpus: Path, tmp_path: Path) -> None:
    main(tiny_fit_args(corpus, max_steps=20, **{"model.arch": "bigram", "model.learning_rate": 0.05}))
    loaded = load_checkpoint(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    assert loaded.arch == "bigram"
    assert sum(p.numel() for p in loaded.model.parameters()) == loaded.tokenizer.vocab_size**2


def hparams_logged(version: Path) -> tuple[dict[str, object], list[str], set[str]]:
    """The hyperparameters, the HParams metric tags and every scalar tag of a run's TensorBoard log."""
    params, metrics, tags = {}, [], set()
    for path in version.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                tags.add(value.tag)
                if not value.tag.startswith("_hparams_/"):
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                metrics += [info.name.tag for info in data.experiment.metric_infos]
                for key, field in data.session_start_info.hparams.items():
                    params[key] = getattr(field, field.WhichOneof("kind"))
    return params, metrics, tags


@pytest.mark.slow
def test_hparams_rank_runs_by_their_validation_loss(pretrained: Path) -> None:
    run = pretrained.parents[1]
    params, metrics, tags = hparams_logged(run)
    assert metrics == ["val/loss", "val/best_loss", "val/bits_per_char"] and "hp_metric" not in tags
    assert params["data.batch_size"] == 8 and params["data.block_size"] == 32 and params["trainer.max_steps"] == 30
    assert params["data.tokenizer"].startswith("char:") and params["n_layer"] == 2
    assert not any(key.startswith("_") for key in params)  # no LightningCLI bookkeeping
    assert "none" not in params.values() and "muon_lr" not in params  # unset: left out, not written as text
    best = scalars(run, "val/best_loss")
    val = scalars(run, "val/loss")
    assert best == {step: min(v for s, v in val.items() if s <= step) for step in val}


@pytest.mark.slow
def test_the_progress_bar_counts_steps_in_80_columns(corpus: Path, capsys: pytest.CaptureFixture) -> None:
    args = [a for a in tiny_fit_args(corpus, max_steps=12) if "enable_progress_bar" not in a]
    main(args)
    output = capsys.readouterr().out.replace("\r", "\n")
    bars = [line for line in output.splitlines() if line.startswith("step ")]
    assert bars and bars[-1].startswith("step 12/12") and "loss=" in bars[-1] and "val=" in bars[-1]
    assert "Epoch" not in output and "v_num" not in output
    assert max(len(line) for line in bars) <= 80


@pytest.mark.slow
def test_a_resumed_run_counts_its_steps_towards_max_steps(pretrained: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = pretrained.parents[3] / "corpus.txt"
    args = [a for a in tiny_fit_args(corpus, max_steps=34) if "enable_progress_bar" not in a]
    main([*args, f"--ckpt_path={pretrained}"])
    output = capsys.readouterr().out.replace("\r", "\n")
    bars = [line for line in output.splitlines() if line.startswith("step ")]
    assert bars and all(line.split()[1].endswith("/34") for line in bars), bars
    assert any(line.startswith("step 30/34") for line in bars) and bars[-1].startswith("step 34/34")


def test_a_hyperparameter_keeps_its_type_across_runs(tmp_path: Path) -> None:
    # TensorBoard types an HParams column by its values: an unset muon_lr beside a set one must not
    # turn the column into text.
    for muon_lr in (None, 0.003):
        logger = RunLogger(save_dir=tmp_path, name="runs")
        logger.log_hyperparams({"learning_rate": 0.001, "muon_lr": muon_lr})
        logger.finalize("success")
    runs = [hparams_logged(tmp_path / "runs" / f"version_{n}")[0] for n in (0, 1)]
    assert runs == [{"learning_rate": 0.001}, {"learning_rate": 0.001, "muon_lr": 0.003}]


@pytest.mark.slow
def test_a_run_logs_no_epoch_scalar(pretrained: Path) -> None:
    # Lightning adds `epoch` to every point; a minigpt run is one endless epoch, always 0.
    tags = events(pretrained.parents[1]).Tags()["scalars"]
    assert "train/loss" in tags and "epoch" not in tags


@pytest.mark.slow
def test_the_model_summary_counts_the_flops_of_a_batch(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    main(tiny_fit_args(corpus, max_steps=1, **{"trainer.enable_model_summary": "true"}))
    [total] = re.findall(r"Total FLOPs: ([\d.]+) M", capsys.readouterr().out)
    # A forward pass is about 2 FLOPs per weight per token, here for a batch of 8 windows of 32 tokens.
    model = load_checkpoint(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").model
    tokens, weights = 8 * 32, sum(p.numel() for p in model.parameters())
    assert 1.5 * weights * tokens < float(total) * 1e6 < 3 * weights * tokens
