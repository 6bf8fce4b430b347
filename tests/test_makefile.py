"""The Makefile's install steps: `make train` installs what training needs and no more."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned_commands(target: str, venv: Path) -> str:
    """What `make TARGET` would run on a machine without the virtual environment (`make -n -B`)."""
    result = subprocess.run(
        ["make", "-n", "-B", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_train_installs_the_package_without_the_dev_tools(tmp_path: Path) -> None:
    commands = planned_commands("train", tmp_path / "venv")
    assert "pip install --quiet -e ." in commands
    assert "[dev]" not in commands  # transformers would cost every run ~1 s of start-up
    assert "minigpt fit --config configs/speedrun.yaml" in commands


@pytest.mark.parametrize("target", ["test", "lint"])
def test_tests_and_lint_install_the_dev_tools(target: str, tmp_path: Path) -> None:
    assert "pip install --quiet -e '.[dev]'" in planned_commands(target, tmp_path / "venv")
