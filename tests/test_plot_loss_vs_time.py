"""benchmarks/plot_loss_vs_time.py: a PNG from two tiny TensorBoard logs, and one-line errors on bad input."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from torch.utils.tensorboard import SummaryWriter

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "plot_loss_vs_time.py"
STARTED_AT = 1_764_900_000.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_script() -> ModuleType:
    """The script as a module: benchmarks/ is not a package."""
    spec = importlib.util.spec_from_file_location("plot_loss_vs_time", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up by name while it builds the class.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


plot_loss_vs_time = load_script()


def write_log(version: Path, losses: list[float], seconds_apart: float, tag: str = "val/loss") -> None:
    with SummaryWriter(str(version)) as writer:
        for i, loss in enumerate(losses):
            writer.add_scalar(tag, loss, (i + 1) * 100, walltime=STARTED_AT + (i + 1) * seconds_apart)


def write_runs(path: Path, versions: dict[str, Path]) -> Path:
    runs = [
        {"name": name, "label": f"{name} (test)", "version": str(version), "started_at": STARTED_AT, "wall": 40.0}
        for name, version in versions.items()
    ]
    path.write_text(json.dumps({"date": "2026-12-05", "machine": "test machine", "runs": runs}))
    return path


@pytest.fixture
def runs_file(tmp_path: Path) -> Path:
    write_log(tmp_path / "small" / "version_0", [2.9, 2.2, 1.9, 1.78], seconds_apart=10)
    write_log(tmp_path / "modern" / "version_0", [2.7, 1.9, 1.65, 1.55], seconds_apart=9)
    versions = {"pretrain-small": tmp_path / "small" / "version_0", "modern": tmp_path / "modern" / "version_0"}
    return write_runs(tmp_path / "runs.json", versions)


def test_writes_a_png(runs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "images" / "loss-vs-time.png"
    plot_loss_vs_time.main(["--runs", str(runs_file), "--out", str(out)])
    image = out.read_bytes()
    assert image.startswith(PNG_MAGIC)
    assert len(image) > 10_000
    assert capsys.readouterr().out.strip() == str(out)


def test_draws_the_first_run_of_each_name(runs_file: Path) -> None:
    data = json.loads(runs_file.read_text())
    repeat = {**data["runs"][0], "version": "elsewhere/version_0"}
    runs_file.write_text(json.dumps({**data, "runs": [*data["runs"], repeat]}))
    _, runs = plot_loss_vs_time.load_runs(runs_file)
    assert [run.name for run in runs] == ["pretrain-small", "modern"]
    assert runs[0].version == Path(data["runs"][0]["version"])


def one_line_error(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        plot_loss_vs_time.main(argv)
    message = exit_info.value.code
    assert isinstance(message, str) and "\n" not in message, message
    return message


def test_a_missing_version_folder_is_named(runs_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "version_0"
    write_runs(runs_file, {"pretrain-small": tmp_path / "small" / "version_0", "gone": missing})
    message = one_line_error(["--runs", str(runs_file), "--out", str(tmp_path / "out.png")])
    assert str(missing) in message
    assert not (tmp_path / "out.png").exists()


def test_a_folder_without_val_loss_is_named(tmp_path: Path) -> None:
    version = tmp_path / "train-only" / "version_0"
    write_log(version, [3.0, 2.5], seconds_apart=5, tag="train/loss")
    runs_file = write_runs(tmp_path / "runs.json", {"train-only": version})
    message = one_line_error(["--runs", str(runs_file), "--out", str(tmp_path / "out.png")])
    assert str(version) in message and "val/loss" in message


def test_a_missing_runs_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "runs.json"
    assert str(missing) in one_line_error(["--runs", str(missing)])


def test_a_group_of_runs_is_one_line_through_each_runs_last_validation(runs_file: Path, tmp_path: Path) -> None:
    write_log(tmp_path / "half" / "version_0", [1.62], seconds_apart=20)
    data = json.loads(runs_file.read_text())
    modern = {**data["runs"][1], "group": "modern"}
    half = {**modern, "name": "modern-half", "version": str(tmp_path / "half" / "version_0")}
    runs_file.write_text(json.dumps({**data, "runs": [data["runs"][0], modern, half]}))
    _, runs = plot_loss_vs_time.load_runs(runs_file)
    figure = plot_loss_vs_time.Figure()
    axes = figure.add_subplot()
    plot_loss_vs_time.draw(axes, runs)
    lines = {line.get_label(): line for line in axes.get_lines()}
    grouped = next(line for label, line in lines.items() if label.startswith("modern (test)"))
    assert list(grouped.get_xdata()) == [20.0, 36.0] and list(grouped.get_ydata()) == pytest.approx([1.62, 1.55])
