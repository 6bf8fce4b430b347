"""CPU threads: a run alone keeps torch's threads, runs that share the cores split them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_fit_args
from lightning.pytorch import Callback, Trainer

from minigpt import cpu_registry, threads
from minigpt.callbacks import cpu_threads
from minigpt.cli import main
from minigpt.cpu_registry import CoreShare
from minigpt.lightning_cli import run_lightning_cli
from minigpt.threads import ThreadPolicy

HOLDER = """
import signal, sys
from pathlib import Path
from minigpt.cpu_registry import CoreShare
share = CoreShare(Path(sys.argv[1]))
share.join()
print("joined", flush=True)
signal.pause()  # holds its entry until killed
"""


@pytest.fixture
def automatic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Threads chosen by minigpt, out of 4 of torch's, with a registry of this test's own."""
    monkeypatch.setattr(threads, "USER_SET_THREADS", False)
    monkeypatch.setattr(threads, "DEFAULT_THREADS", 4)
    monkeypatch.setattr(cpu_registry, "REGISTRY", tmp_path / "registry")
    before = torch.get_num_threads()
    yield tmp_path / "registry"
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_run_keeps_the_threads_it_started_with_while_others_come_and_go(automatic: Path) -> None:
    policy = ThreadPolicy()
    assert policy.start() == "CPU threads: 4 (alone on the CPU)"
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(automatic)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "joined"
        assert policy.update() is None and torch.get_num_threads() == 4
        # A run that starts now sees the two others and takes its share.
        second = ThreadPolicy()
        assert "3 minigpt processes share" in second.start() and torch.get_num_threads() == 1
        second.stop()
        # A resumed run computes with the count its checkpoint's run had.
        assert policy.restore(2) == "CPU threads: 2 (as the run that wrote the checkpoint, so that it computes alike)"
        assert torch.get_num_threads() == 2
    finally:
        other.kill()
        other.wait()
    policy.stop()


@pytest.mark.slow
def test_adaptive_threads_follow_the_processes_that_share_the_cpu(automatic: Path) -> None:
    policy = ThreadPolicy(adaptive=True)
    assert policy.start() == "CPU threads: 4 (alone on the CPU)" and torch.get_num_threads() == 4
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(automatic)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "joined"
        assert "2 minigpt processes share" in policy.update() and torch.get_num_threads() == 2
        assert policy.update() is None  # nothing changed, nothing to say
    finally:
        other.kill()
        other.wait()
    # Killed without a word: the OS dropped its lock, so its entry is stale and removed.
    assert policy.update() == "CPU threads: 4 (alone on the CPU)" and torch.get_num_threads() == 4
    assert len(list(automatic.glob("*.lock"))) == 1
    policy.stop()
    assert not list(automatic.glob("*.lock"))


def test_two_entries_in_one_process_count_as_two(automatic: Path) -> None:
    first, second = CoreShare(), CoreShare()
    first.join()
    second.join()
    assert first.processes() == second.processes() == 2
    second.leave()
    assert first.processes() == 1
    first.leave()


def test_what_the_user_set_wins(automatic: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "USER_SET_THREADS", True)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)
    policy = ThreadPolicy()
    assert policy.start() == "CPU threads: 3 (OMP_NUM_THREADS=3)" and policy.update() is None
    assert not automatic.exists()  # a run that does not share does not register either
    explicit = ThreadPolicy(threads=1)
    assert explicit.start() == "CPU threads: 1 (cpu.threads)" and torch.get_num_threads() == 1
    explicit.stop()
    assert torch.get_num_threads() == 3


@pytest.mark.slow
def test_fit_reports_its_threads_and_takes_cpu_threads(
    automatic: Path, corpus: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        main(tiny_fit_args(corpus, max_steps=2))
        main(tiny_fit_args(corpus, max_steps=2, **{"cpu.threads": 1}))
    lines = [record.getMessage() for record in caplog.records if "CPU threads" in record.getMessage()]
    assert lines == ["minigpt: CPU threads: 4 (alone on the CPU)", "minigpt: CPU threads: 1 (cpu.threads)"]
    assert not list(automatic.glob("*.lock"))  # each run left the registry when it ended


class Disturbance(Callback):
    """Another minigpt process computing beside the run from step `start` to step `stop`: one
    that holds a place in the CPU registry, as a second run or a sweep worker would."""

    def __init__(self, registry: Path, start: int, stop: int) -> None:
        self.registry, self.start, self.stop = registry, start, stop
        self.other: subprocess.Popen | None = None

    def on_train_batch_end(self, trainer: Trainer, *args: object) -> None:
        if trainer.global_step == self.start:
            self.other = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(self.registry)], stdout=subprocess.PIPE, text=True
            )
            assert self.other.stdout is not None and self.other.stdout.readline().strip() == "joined"
        if trainer.global_step == self.stop and self.other is not None:
            self.other.kill()
            self.other.wait()


def final_weights(root: Path) -> dict[str, torch.Tensor]:
    last = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    return torch.load(last, weights_only=True)["state_dict"]


def thread_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "CPU threads" in record.getMessage()]


@pytest.mark.slow
def test_a_run_computes_what_an_undisturbed_run_computes_while_others_start_and_stop(
    automatic: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cpu_threads, "THREAD_CHECK_SECONDS", 0.0)  # an adaptive run looks at every step

    def args(name: str, *extra: str) -> list[str]:
        return [*tiny_fit_args(corpus, max_steps=40, **{"trainer.default_root_dir": tmp_path / name}), *extra]

    run_lightning_cli(args("undisturbed"))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_lightning_cli(args("disturbed"), extra_callbacks=[Disturbance(automatic, start=5, stop=30)])
    assert thread_lines(caplog) == ["minigpt: CPU threads: 4 (alone on the CPU)"]
    undisturbed, disturbed = final_weights(tmp_path / "undisturbed"), final_weights(tmp_path / "disturbed")
    assert all(torch.equal(undisturbed[name], disturbed[name]) for name in undisturbed)
    # The same disturbance moves an adaptive run's threads: the case that made runs differ.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_lightning_cli(args("adaptive", "--cpu.adaptive=true"), extra_callbacks=[Disturbance(automatic, 5, 30)])
    assert "minigpt: CPU threads: 2 (2 minigpt processes share 4 threads' worth of cores)" in thread_lines(caplog)


@pytest.mark.slow
def test_a_resumed_run_computes_with_the_threads_its_checkpoint_had(
    automatic: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def args(name: str, max_steps: int) -> list[str]:
        # One schedule for both lengths, so that the first 10 steps are the same steps.
        overrides = {"model.lr_decay_steps": 20, "trainer.default_root_dir": tmp_path / name}
        return tiny_fit_args(corpus, max_steps=max_steps, **overrides)

    run_lightning_cli(args("whole", 20))
    run_lightning_cli(args("halves", 10))  # its last.ckpt is what a kill after step 10 leaves
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(automatic)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "joined"
        last = tmp_path / "halves" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
        caplog.clear()
        with caplog.at_level(logging.INFO):
            run_lightning_cli([*args("halves", 20), f"--ckpt_path={last}"])
    finally:
        other.kill()
        other.wait()
    # It started beside another process (2 of 4 threads), then took the 4 its checkpoint's run had.
    assert thread_lines(caplog) == [
        "minigpt: CPU threads: 2 (2 minigpt processes share 4 threads' worth of cores)",
        "minigpt: CPU threads: 4 (as the run that wrote the checkpoint, so that it computes alike)",
    ]
    whole = final_weights(tmp_path / "whole")
    resumed = torch.load(tmp_path / "halves" / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(whole[name], resumed["state_dict"][name]) for name in whole)


@pytest.mark.slow
def test_runs_started_together_share_the_cores_evenly(corpus: Path, tmp_path: Path) -> None:
    """Each sees the other when it chooses (both joined as their commands started), so neither
    takes every core for its whole run while the other takes the rest."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env["TMPDIR"] = str(tmp_path)  # a CPU registry of this test's own
    # Long enough that neither ends before the other chooses; a data cache each, so that neither
    # waits for the other's to be built (and chooses only once the other is gone).
    command = [sys.executable, "-m", "minigpt", *tiny_fit_args(corpus, max_steps=30)]
    runs = [
        subprocess.Popen(
            [*command, f"--trainer.default_root_dir={name}"],
            env={**env, "MINIGPT_CACHE_DIR": str(tmp_path / name / "cache")},
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-2000:]
        lines = [line for line in stderr.splitlines() if "CPU threads" in line]
        assert len(lines) == 1 and "2 minigpt processes share" in lines[0], lines
