"""Runs that survive: signals, kill -9, half-written checkpoints, non-finite losses, bad folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO, tiny_fit_args, wait_until
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from test_training import events

from minigpt import atomic_io
from minigpt.atomic_io import AtomicCheckpointIO
from minigpt.cli import main
from minigpt.data import TextDataModule
from minigpt.errors import MinigptError
from minigpt.lightning_cli import run_lightning_cli
from minigpt.model import GPTConfig
from minigpt.module import LanguageModel

TESTS = Path(__file__).resolve().parent


def start_fit(args: list[str], probes: Path) -> subprocess.Popen:
    """`minigpt fit ARGS` in a process of its own, writing its steps done to `probes`/steps."""
    probes.mkdir(exist_ok=True)
    env = {**os.environ, "MINIGPT_PROBE_DIR": str(probes), "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    command = [sys.executable, "-m", "minigpt", *args, "--trainer.callbacks+=probes.StepProbe"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def steps_done(probes: Path) -> int:
    try:
        return int((probes / "steps").read_text())
    except FileNotFoundError:
        return 0


def saved_step(checkpoint: Path) -> int:
    return torch.load(checkpoint, weights_only=True)["global_step"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_says_how_to_resume(signum: int, corpus: Path, tmp_path: Path) -> None:
    args = tiny_fit_args(corpus, max_steps=100_000, **{"trainer.val_check_interval": 100_000})
    process = start_fit(args, tmp_path / "probes")
    wait_until(lambda: steps_done(tmp_path / "probes") >= 3, "3 steps", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert f"checkpoint saved to {last}" in stderr
    assert f"--ckpt_path {last}" in stderr
    assert not list(last.parent.glob("last-v*.ckpt"))
    step = saved_step(last)
    assert step > 0

    main([*args, f"--trainer.max_steps={step + 3}", f"--ckpt_path={last}"])
    resumed = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    assert saved_step(resumed) == step + 3


@pytest.mark.slow
def test_kill_9_loses_only_the_steps_since_the_last_checkpoint(corpus: Path, tmp_path: Path) -> None:
    args = tiny_fit_args(corpus, max_steps=100_000, **{"trainer.val_check_interval": 5})
    process = start_fit(args, tmp_path / "probes")
    # Killed between checkpoints: after the first (step 5), two steps into training on from it.
    wait_until(lambda: steps_done(tmp_path / "probes") >= 7, "7 steps", process)
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    process.kill()
    process.communicate()
    step = saved_step(last)  # loads: the file is whole even though the process died at any moment
    assert step > 0 and step % 5 == 0
    main([*args, f"--trainer.max_steps={step + 2}", f"--ckpt_path={last}"])
    assert saved_step(tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt") == step + 2


def test_a_crash_while_writing_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "weights": torch.ones(1000)}, target)

    def crash_midway(obj: object, file: object) -> None:
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"global_step": 2, "weights": torch.zeros(1000)}, target)
    assert torch.load(target, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def nan_at_step(module: LanguageModel, bad_step: int) -> None:
    forward = module.forward

    def sometimes_nan(ids: torch.Tensor) -> torch.Tensor:
        logits = forward(ids)
        return logits * float("nan") if module.global_step + 1 == bad_step and module.training else logits

    module.forward = sometimes_nan


def trainer_for(tmp_path: Path, max_steps: int) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        val_check_interval=5,
        limit_val_batches=2,
        default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def tiny_module(**kwargs: object) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(gpt=GPTConfig(n_layer=1, n_head=2, n_embd=16), **kwargs)


@pytest.mark.slow
def test_nonfinite_loss_stops_before_touching_the_weights(corpus: Path, tmp_path: Path) -> None:
    data = TextDataModule(path=str(corpus), block_size=16, batch_size=4)
    module = tiny_module()
    nan_at_step(module, bad_step=7)
    with pytest.raises(MinigptError, match="loss is nan at step 7; the weights were not updated") as error:
        trainer_for(tmp_path, max_steps=20).fit(module, datamodule=data)
    assert "\n" not in str(error.value)
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert saved_step(tmp_path / "ckpt" / "last.ckpt") == 5


@pytest.mark.slow
def test_nonfinite_loss_can_skip_the_batch(corpus: Path, tmp_path: Path) -> None:
    data = TextDataModule(path=str(corpus), block_size=16, batch_size=4)
    module = tiny_module(on_nonfinite_loss="skip")
    nan_at_step(module, bad_step=7)
    with pytest.warns(UserWarning, match="loss is nan at step 7: batch skipped"):
        trainer_for(tmp_path, max_steps=12).fit(module, datamodule=data)
    assert module.skipped_batches == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("below", ["", "runs"], ids=["a file", "a folder under a file"])
def test_unwritable_log_folder_is_refused_before_training(
    below: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    root = blocker / below if below else blocker
    with pytest.raises(SystemExit) as exit:
        main([*tiny_fit_args(corpus), f"--trainer.default_root_dir={root}"])
    assert exit.value.code == 2
    # troubleshooting.md quotes the message as it is written, with X for the folder and F for the file
    quoted = "trainer.default_root_dir: cannot write run output to X: F is a file, not a folder"
    assert f"`{quoted}`" in (REPO / "docs" / "troubleshooting.md").read_text()
    message = quoted.replace("X", str(root)).replace("F is", f"{blocker} is")
    assert f"minigpt: error: {message}; " in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_dropout_run_resumes_on_the_same_curve(corpus: Path, tmp_path: Path) -> None:
    # Dropout draws from torch's generator: its state travels in the checkpoint.
    full = tiny_fit_args(corpus, max_steps=20, **{"model.lr_decay_steps": 20, "model.gpt.dropout": 0.3})
    main(full)
    main([*full, "--trainer.max_steps=10"])
    last = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    main([*full, f"--ckpt_path={last}"])
    from test_training import scalars

    uninterrupted = scalars(tmp_path / "lightning_logs" / "version_0", "train/loss")
    resumed = scalars(tmp_path / "lightning_logs" / "version_2", "train/loss")
    for step in range(11, 21):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-5), step
    assert os.path.exists(last)


def killed_write(folder: Path, name: str) -> Path:
    """What kill -9 in the middle of a write of `name` leaves: the write's temporary file, named
    with the id of a process that is gone."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    partial = folder / f".{name}.{gone.pid}.k1ll3d.partial"
    partial.write_bytes(b"PK\x03\x04 half")
    return partial


@pytest.mark.slow
def test_a_killed_write_leaves_no_partial_file_once_the_run_resumes(corpus: Path, tmp_path: Path) -> None:
    main(tiny_fit_args(corpus, max_steps=10))
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    killed_write(checkpoints, "last.ckpt")
    main([*tiny_fit_args(corpus, max_steps=20), f"--ckpt_path={checkpoints / 'last.ckpt'}"])
    for folder in (checkpoints, tmp_path / "lightning_logs" / "version_1" / "checkpoints"):
        assert not list(folder.glob(".*.partial")), folder


@pytest.mark.slow
def test_the_next_run_removes_a_killed_write_of_another_run(corpus: Path, tmp_path: Path) -> None:
    main(tiny_fit_args(corpus, max_steps=10))
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    stale = killed_write(checkpoints, "best-step10-val3.1000.ckpt")
    # A write in progress (this process is alive) is left alone.
    running = checkpoints / f".last.ckpt.{os.getpid()}.w0rk1ng.partial"
    running.write_bytes(b"PK\x03\x04 writing")
    main(tiny_fit_args(corpus, max_steps=5))
    assert not stale.exists() and running.exists()


@pytest.mark.slow
def test_a_run_that_fails_before_its_first_step_leaves_no_run_folder(corpus: Path, tmp_path: Path) -> None:
    main(tiny_fit_args(corpus, max_steps=5))
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    other = tmp_path / "other.txt"
    other.write_text("0123456789 +-*/=\n" * 600)  # another alphabet: the checkpoint's ids do not fit it
    with pytest.raises(SystemExit):
        main([*tiny_fit_args(other, max_steps=10), f"--ckpt_path={last}"])
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]


class SignalAtStep(Callback):
    """Sends this process SIGTERM after step `step`, as a scheduler's pre-emption would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


LOGGED_TAGS = ("train/loss", "train/lr", "train/grad_norm", "val/loss")


def logged(version: Path) -> dict[str, dict[int, float]]:
    accumulator = events(version)
    return {tag: {e.step: e.value for e in accumulator.Scalars(tag)} for tag in LOGGED_TAGS}


@pytest.mark.slow
def test_an_interrupted_and_resumed_run_logs_what_an_uninterrupted_one_does(corpus: Path, tmp_path: Path) -> None:
    # Logged every 4 steps, validated every 5, stopped after step 14: off both grids, the stop adds no point.
    args = tiny_fit_args(
        corpus,
        max_steps=20,
        **{"trainer.val_check_interval": 5, "trainer.log_every_n_steps": 4, "model.lr_decay_steps": 20},
    )
    run_lightning_cli(args)
    with pytest.raises(SystemExit):
        run_lightning_cli(args, extra_callbacks=[SignalAtStep(13)])
    last = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    run_lightning_cli([*args, f"--ckpt_path={last}"])
    runs = [logged(tmp_path / "lightning_logs" / f"version_{n}") for n in range(3)]
    assert max(runs[1]["train/loss"]) == 11  # its last point is step 12's (logged at 11), on the grid
    for tag in LOGGED_TAGS:
        interrupted, resumed = runs[1][tag], runs[2][tag]
        assert not interrupted.keys() & resumed.keys(), tag  # no step logged twice
        assert sorted({**interrupted, **resumed}) == sorted(runs[0][tag]), tag
        for step, value in {**interrupted, **resumed}.items():
            assert value == pytest.approx(runs[0][tag][step], rel=1e-5), (tag, step)
    # Resuming a finished run trains nothing, logs nothing and leaves no run folder.
    run_lightning_cli([*args, f"--ckpt_path={tmp_path / 'lightning_logs' / 'version_0' / 'checkpoints' / 'last.ckpt'}"])
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0", "version_1", "version_2"]
