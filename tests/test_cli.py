from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_fit_args

from minigpt.cli import main

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def run_main(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    return 0


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses(config: Path, capsys: pytest.CaptureFixture, corpus: Path) -> None:
    # --print_config parses the whole file against the classes' signatures without training.
    assert run_main(["fit", f"--config={config}", f"--data.path={corpus}", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_steps"] > 0
    assert printed["data"]["class_path"].startswith("minigpt.data.")


def test_configs_are_commented() -> None:
    for config in CONFIGS:
        assert config.read_text().lstrip().startswith("#"), f"{config.name} has no header comment"


def test_precision_follows_the_hardware(capsys: pytest.CaptureFixture, corpus: Path) -> None:
    assert run_main(["fit", f"--config={REPO / 'configs/pretrain-small.yaml'}", "--print_config"]) == 0
    precision = yaml.safe_load(capsys.readouterr().out)["trainer"]["precision"]
    import torch

    assert precision == ("bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true")
    override = ["fit", f"--config={REPO / 'configs/pretrain-small.yaml'}", "--trainer.precision=bf16-mixed"]
    assert run_main([*override, "--print_config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["precision"] == "bf16-mixed"


@pytest.fixture
def checkpoint(corpus: Path, tmp_path: Path) -> Path:
    main(tiny_fit_args(corpus, max_steps=10))
    return tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def minigpt_process(*args: str) -> subprocess.CompletedProcess:
    """`python -m minigpt ARGS` in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "minigpt", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def minigpt(capsys: pytest.CaptureFixture):
    """`minigpt ARGS` in this process (fast), returning exit code and captured output."""

    def run(*args: str) -> subprocess.CompletedProcess:
        code = run_main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


def test_generate_command_prints_seeded_text(checkpoint: Path) -> None:
    args = ["generate", f"--ckpt_path={checkpoint}", "--prompt=ROMEO:", "--max_new_tokens=40", "--seed=1"]
    first, second = minigpt_process(*args), minigpt_process(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ROMEO:")
    assert len(first.stdout) == len("ROMEO:") + 40 + 1  # print adds a newline
    assert first.stdout == second.stdout
    assert minigpt_process(*args[:-1], "--seed=2").stdout != first.stdout


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("minigpt: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_prompt_outside_the_vocabulary_names_the_characters(checkpoint: Path, minigpt) -> None:
    line = one_line_error(minigpt("generate", f"--ckpt_path={checkpoint}", "--prompt=ROMEO: ¿é?"))
    assert "'¿é'" in line and "--prompt" in line


@pytest.mark.parametrize("command", ["generate", "fit"])
def test_missing_checkpoint(command: str, tmp_path: Path, minigpt) -> None:
    args = ["--config", str(REPO / "configs/pretrain-small.yaml")] if command == "fit" else []
    line = one_line_error(minigpt(command, *args, f"--ckpt_path={tmp_path / 'nope.ckpt'}"))
    assert "nope.ckpt does not exist" in line


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_file_that_is_not_a_checkpoint(content: bytes, tmp_path: Path, minigpt) -> None:
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(content)
    line = one_line_error(minigpt("generate", f"--ckpt_path={bogus}"))
    assert "bogus.ckpt is not a readable checkpoint" in line


def test_torch_file_that_is_not_a_minigpt_checkpoint(tmp_path: Path, minigpt) -> None:
    import torch

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    line = one_line_error(minigpt("generate", f"--ckpt_path={foreign}"))
    assert "is not a minigpt checkpoint" in line


def test_missing_corpus_via_fit(tmp_path: Path, minigpt) -> None:
    line = one_line_error(minigpt(*tiny_fit_args(tmp_path / "absent.txt", max_steps=1)))
    assert "absent.txt does not exist" in line


def test_bad_sampling_values(checkpoint: Path, minigpt) -> None:
    assert "temperature" in one_line_error(minigpt("generate", f"--ckpt_path={checkpoint}", "--temperature=-1"))
    assert "top_k" in one_line_error(minigpt("generate", f"--ckpt_path={checkpoint}", "--top_k=0"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [("--model.no_such_key=3", "no_such_key"), ("--trainer.max_steps=lots", "max_steps")],
)
def test_unknown_key_or_wrong_type_is_reported(override: str, expected: str, minigpt) -> None:
    result = minigpt("fit", f"--config={REPO / 'configs/pretrain-small.yaml'}", override)
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_impossible_model_shape_via_fit(corpus: Path, minigpt) -> None:
    line = one_line_error(minigpt(*tiny_fit_args(corpus, max_steps=1, **{"model.n_head": 3})))
    assert "model.n_embd (32) must be divisible by model.n_head (3)" in line
