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


BPE_FIT = {"data.tokenizer.kind": "regex-bpe", "data.tokenizer.vocab_size": 300, "model.sample_prompt": "ROMEO"}


def test_bpe_tokenizer_from_the_config_lands_in_the_checkpoint(corpus: Path, tmp_path: Path, minigpt) -> None:
    from minigpt import load_checkpoint

    main(tiny_fit_args(corpus, max_steps=4, **BPE_FIT))
    path = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(path)
    assert checkpoint.tokenizer.kind == "regex-bpe" and checkpoint.tokenizer.vocab_size == 300
    assert checkpoint.model.config.vocab_size == 300
    result = minigpt("generate", f"--ckpt_path={path}", "--prompt=Ünïcode ROMEO", "--max_new_tokens=5", "--seed=1")
    assert result.returncode == 0 and result.stdout.startswith("Ünïcode ROMEO")
    # The same tokenizer, read back from the checkpoint, feeds a new run.
    reuse = {"data.tokenizer.kind": "pretrained", "data.tokenizer.path": str(path), "model.sample_prompt": "ROMEO"}
    assert run_main(tiny_fit_args(corpus, max_steps=2, **reuse)) == 0


def test_checkpoint_tokenizer_must_match_the_explicit_one(corpus: Path, tmp_path: Path, minigpt) -> None:
    main(tiny_fit_args(corpus, max_steps=4, **BPE_FIT))
    path = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    other = {**BPE_FIT, "data.tokenizer.vocab_size": 320}
    line = one_line_error(minigpt(*tiny_fit_args(corpus, max_steps=8, **other), f"--ckpt_path={path}"))
    assert "regex-bpe tokenizer of 300 ids" in line and "data.tokenizer gives a regex-bpe tokenizer of 320 ids" in line


def test_tokenizer_train_command_writes_a_usable_tokenizer(corpus: Path, tmp_path: Path, minigpt) -> None:
    output = tmp_path / "tok.json"
    args = ["--kind=regex-bpe", "--vocab_size=300", "--pattern=gpt2", f"--input={corpus}", f"--output={output}"]
    result = minigpt("tokenizer", "train", *args)
    assert result.returncode == 0, result.stderr
    assert "300 ids" in result.stdout
    from minigpt.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(str(output))
    assert tokenizer.kind == "regex-bpe" and tokenizer.pattern == "gpt2"
    assert tokenizer.decode(tokenizer.encode(corpus.read_text())) == corpus.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind=bpe", "--vocab_size=100"], "vocab_size 100 is smaller than the byte alphabet"),
        (["--kind=bpe", "--vocab_size=300", "--input=absent.txt"], "--input: absent.txt does not exist"),
    ],
)
def test_tokenizer_train_bad_input(args: list[str], message: str, corpus: Path, minigpt) -> None:
    full = [f"--input={corpus}", "--output=tok.json", *args]
    assert message in one_line_error(minigpt("tokenizer", "train", *full))


def test_tokenizer_train_reports_the_bad_byte(tmp_path: Path, minigpt) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\n" * 3 + b"caf\xe9\n")
    line = one_line_error(minigpt("tokenizer", "train", "--kind=char", f"--input={bad}", "--output=tok.json"))
    assert "bad byte 0xe9 at offset 33, line 4" in line


def test_unknown_tokenizer_subcommand(minigpt) -> None:
    assert "takes train or compare" in one_line_error(minigpt("tokenizer", "merge"))


def test_tokenizer_compare_runs_end_to_end(corpus: Path, tmp_path: Path, minigpt) -> None:
    args = ["--tokenizers", "char", "bpe:300", "regex-bpe:300:gpt2", "--steps=3", "--n_layer=1", "--n_embd=16"]
    result = minigpt("tokenizer", "compare", f"--input={corpus}", f"--output={tmp_path / 'out'}", *args)
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert table.strip() in result.stdout
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| char", "| bpe:300", "| regex-bpe:300:gpt2"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[4] == "exact" and float(cells[5]) > 0
    assert float(rows[0].split("|")[3]) == 1.0  # characters per token of the char tokenizer
    assert {p.name for p in (tmp_path / "out" / "tensorboard").iterdir()} == {"char", "bpe-300", "regex-bpe-300-gpt2"}


def test_tokenizer_compare_bad_label(corpus: Path, minigpt) -> None:
    line = one_line_error(minigpt("tokenizer", "compare", f"--input={corpus}", "--tokenizers", "bpe:lots"))
    assert "'bpe:lots' should read KIND[:VOCAB_SIZE[:PATTERN]]" in line


def test_fsdp_config_builds_block_wrapping_strategy(capsys: pytest.CaptureFixture) -> None:
    from minigpt.model import Block
    from minigpt.strategies import BlockFSDP

    assert run_main(["fit", f"--config={REPO / 'configs/pretrain-gpt2-fsdp.yaml'}", "--print_config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["strategy"]["class_path"] == "minigpt.strategies.BlockFSDP"
    strategy = BlockFSDP(**config["trainer"]["strategy"]["init_args"])
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {Block}
