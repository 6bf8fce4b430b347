from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from minigpt.cli import main

# The tests in this process compute on tiny tensors, where a second torch thread buys nothing and,
# while anything else computes on the machine, makes them a hundred times slower or worse (spinning
# threads; seen on test_generation.py). Runs the tests start as processes choose as minigpt does.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# A small play-script corpus: enough structure for a tiny model to learn in tens of steps.
LINES = [
    "ROMEO:\nBut soft, what light through yonder window breaks?\n",
    "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n",
    "MERCUTIO:\nA plague on both your houses!\n",
    "NURSE:\nGood morrow to you, my lords and ladies.\n",
]


# How often a test looks whether what it waits for has happened.
POLL_SECONDS = 0.2


def wait_until(
    condition: Callable[[], Any], what: str, process: subprocess.Popen | None = None, timeout: float = 120
) -> Any:
    """Poll `condition` until it returns something true, and return that. Fails naming `what` after
    `timeout` seconds, or as soon as `process` (killed then) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process is not None and process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"the process ended (status {process.returncode}) before {what}: {stderr[-3000:]}")
        time.sleep(POLL_SECONDS)
    if process is not None:
        process.kill()
    raise AssertionError(f"waited {timeout} s for {what}")


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own folder with its own cache and no shared data directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINIGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIGPT_DATA_DIR", raising=False)
    return tmp_path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(LINES[i % len(LINES)] for i in range(300)))
    return path


def tiny_fit_args(corpus: Path, max_steps: int = 30, **overrides: object) -> list[str]:
    """CLI arguments for a seconds-long fit of a tiny GPT on `corpus`."""
    values = {
        "seed_everything": 7,
        "trainer.max_steps": max_steps,
        "trainer.val_check_interval": 10,
        "trainer.check_val_every_n_epoch": "null",
        "trainer.log_every_n_steps": 1,
        "trainer.gradient_clip_val": 1.0,
        "trainer.enable_progress_bar": "false",
        "trainer.enable_model_summary": "false",
        "model.gpt.n_layer": 2,
        "model.gpt.n_head": 2,
        "model.gpt.n_embd": 32,
        "model.warmup_steps": 5,
        "model.learning_rate": 3e-3,
        "sample.tokens": 20,
        "sample.prompt": "ROMEO:",
        "data": "minigpt.data.TextDataModule",
        "data.path": str(corpus),
        "data.block_size": 32,
        "data.batch_size": 8,
        "data.max_val_windows": 16,
    }
    values.update(overrides)
    return ["fit"] + [f"--{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-step checkpoint of `tiny_fit_args` on the LINES corpus, trained once for the session."""
    root = tmp_path_factory.mktemp("pretrain")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(LINES[i % len(LINES)] for i in range(300)))
    main(tiny_fit_args(corpus, max_steps=30, **{"trainer.default_root_dir": root, "data.cache_dir": root / "cache"}))
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def instructed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-step alpaca-short instruction fit of a tiny GPT on six Dolly records, once for the session."""
    from minigpt.cli import main

    root = tmp_path_factory.mktemp("instruct")
    records = {
        "data": "minigpt.data.InstructDataModule",
        "data.path": str(REPO / "tests" / "fixtures" / "dolly6.jsonl"),
        "data.prompt_style": "alpaca-short",
        "data.block_size": 512,
        "data.batch_size": 4,
        "data.val_fraction": 0.34,
        "sample.prompt": "### Instruction:\n",
        "trainer.default_root_dir": root,
    }
    args = tiny_fit_args(root / "unused", max_steps=10, **records)
    main([arg for arg in args if not arg.startswith("--data.max_val_windows")])
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
