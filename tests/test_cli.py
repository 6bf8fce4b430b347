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


def test_generate_command_prints_seeded_text(checkpoint: Path) -> None:
    args = ["generate", f"--ckpt_path={checkpoint}", "--prompt=ROMEO:", "--max_new_tokens=40", "--seed=1"]
    first, second = minigpt_process(*args), minigpt_process(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ROMEO:")
    assert len(first.stdout) == len("ROMEO:") + 40 + 1  # print adds a newline
    assert first.stdout == second.stdout
    assert minigpt_process(*args[:-1], "--seed=2").stdout != first.stdout


def test_fsdp_config_builds_block_wrapping_strategy(capsys: pytest.CaptureFixture) -> None:
    from minigpt.model import Block
    from minigpt.strategies import BlockFSDP

    assert run_main(["fit", f"--config={REPO / 'configs/pretrain-gpt2-fsdp.yaml'}", "--print_config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["strategy"]["class_path"] == "minigpt.strategies.BlockFSDP"
    strategy = BlockFSDP(**config["trainer"]["strategy"]["init_args"])
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {Block}
