from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_fit_args

from minigpt.cli import main

# Fit configs; sweep-*.yaml are sweep files (tests/test_sweep.py reads them).
CONFIGS = sorted(path for path in (REPO / "configs").glob("*.yaml") if not path.name.startswith("sweep-"))
# Tests run in a temporary folder: a subprocess must be pointed at this checkout's package.
CHECKOUT_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run_main(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    return 0


@pytest.mark.slow
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


@pytest.mark.slow
def test_precision_follows_the_hardware(capsys: pytest.CaptureFixture, corpus: Path) -> None:
    assert run_main(["fit", f"--config={REPO / 'configs/pretrain-small.yaml'}", "--print_config"]) == 0
    precision = yaml.safe_load(capsys.readouterr().out)["trainer"]["precision"]
    import torch

    assert precision == ("bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true")
    override = ["fit", f"--config={REPO / 'configs/pretrain-small.yaml'}", "--trainer.precision=bf16-mixed"]
    assert run_main([*override, "--print_config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["precision"] == "bf16-mixed"


def minigpt_process(*args: str) -> subprocess.CompletedProcess:
    """`python -m minigpt ARGS` in a fresh interpreter, as a user runs it (this checkout's code)."""
    return subprocess.run(
        [sys.executable, "-m", "minigpt", *args], capture_output=True, text=True, timeout=300, env=CHECKOUT_ENV
    )


@pytest.fixture
def minigpt(capsys: pytest.CaptureFixture):
    """`minigpt ARGS` in this process (fast), returning exit code and captured output."""

    def run(*args: str) -> subprocess.CompletedProcess:
        code = run_main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("minigpt: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.slow
def test_generate_command_prints_seeded_text(pretrained: Path) -> None:
    args = ["generate", f"--ckpt_path={pretrained}", "--prompt=ROMEO:", "--max_new_tokens=40", "--seed=1"]
    first, second = minigpt_process(*args), minigpt_process(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ROMEO:")
    assert len(first.stdout) == len("ROMEO:") + 40 + 1  # print adds a newline
    assert first.stdout == second.stdout
    assert minigpt_process(*args[:-1], "--seed=2").stdout != first.stdout


@pytest.mark.slow
def test_fsdp_config_builds_block_wrapping_strategy(capsys: pytest.CaptureFixture) -> None:
    from minigpt.model import Block
    from minigpt.strategies import BlockFSDP

    assert run_main(["fit", f"--config={REPO / 'configs/pretrain-gpt2-fsdp.yaml'}", "--print_config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["strategy"]["class_path"] == "minigpt.strategies.BlockFSDP"
    strategy = BlockFSDP(**config["trainer"]["strategy"]["init_args"])
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {Block}


# --- instruction tuning, generate and chat ------------------------------------------------------

DOLLY_FIXTURE = REPO / "tests" / "fixtures" / "dolly6.jsonl"


def tiny_instruct_args(max_steps: int = 20) -> list[str]:
    """A seconds-long instruction fit of a tiny GPT on six Dolly records."""
    overrides = {
        "data": "minigpt.data.InstructDataModule",
        "data.path": str(DOLLY_FIXTURE),
        "data.prompt_style": "alpaca-short",
        "data.block_size": 512,
        "data.batch_size": 4,
        "data.val_fraction": 0.34,
        "sample.prompt": "### Instruction:\n",
    }
    args = tiny_fit_args(Path("unused"), max_steps=max_steps, **overrides)
    evaluation = [
        "--trainer.callbacks+=minigpt.callbacks.evaluation.InstructionEvaluation",
        "--trainer.callbacks.max_new_tokens=8",
    ]
    return [arg for arg in args if not arg.startswith("--data.max_val_windows")] + evaluation


@pytest.fixture(scope="module")
def instruct_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_instruct_args`' checkpoint, trained once for the tests that read it."""
    root = tmp_path_factory.mktemp("instruct")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MINIGPT_CACHE_DIR", str(root / "cache"))
        assert run_main([*tiny_instruct_args(), f"--trainer.default_root_dir={root}"]) == 0
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_instruct_fit_saves_its_prompt_style_and_learns(instruct_checkpoint: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from minigpt.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(instruct_checkpoint)
    assert checkpoint.prompt_style == "alpaca-short" and checkpoint.style.name == "alpaca-short"
    events = EventAccumulator(str(instruct_checkpoint.parents[1])).Reload()
    losses = [event.value for event in events.Scalars("train/loss")]
    assert losses[-1] < losses[0] - 1.0
    assert {"val/perplexity", "val/rougeL", "train/tokens_per_sec"} <= set(events.Tags()["scalars"])
    assert 0.0 <= events.Scalars("val/rougeL")[-1].value <= 1.0
    assert "instruction_examples" in str(events.Tags()["tensors"])


@pytest.mark.slow
def test_validate_reports_response_loss(instruct_checkpoint: Path, minigpt) -> None:
    args = ["validate", *tiny_instruct_args()[1:], f"--ckpt_path={instruct_checkpoint}"]
    args = [a for a in args if not a.startswith(("--trainer.max_steps", "--trainer.val_check", "--trainer.check_val"))]
    result = minigpt(*args)
    assert result.returncode == 0, result.stderr
    assert all(metric in result.stdout for metric in ("val/loss", "val/perplexity", "val/rougeL"))


@pytest.mark.slow
def test_generate_wraps_the_prompt_in_the_saved_style(instruct_checkpoint: Path, minigpt) -> None:
    from minigpt.checkpoint import load_checkpoint
    from minigpt.sampling import Sampling

    checkpoint = load_checkpoint(instruct_checkpoint)
    greedy = Sampling(temperature=0)
    question = "Why can camels survive for long without water?"
    wrapped = checkpoint.generate(question, 30, greedy)[0]
    assert wrapped == checkpoint.generate(f"### Instruction:\n{question}\n\n### Response:\n", 30, greedy, wrap=False)[0]
    common = ["generate", f"--ckpt_path={instruct_checkpoint}", f"--prompt={question}", "--max_new_tokens=30"]
    result = minigpt(*common, "--temperature=0")
    assert result.returncode == 0 and result.stdout == wrapped + "\n"  # the response only
    raw = minigpt(*common, "--temperature=0", "--prompt_style=none")
    assert raw.stdout.startswith(question)  # a plain continuation echoes its prompt


@pytest.mark.slow
def test_chat_answers_piped_lines(instruct_checkpoint: Path) -> None:
    lines = "What is a camel?\n\nName a fish.\n"
    args = [sys.executable, "-m", "minigpt", "chat", f"--ckpt_path={instruct_checkpoint}", "--temperature=0"]
    result = subprocess.run(
        [*args, "--max_new_tokens=20"], input=lines, capture_output=True, text=True, timeout=300, env=CHECKOUT_ENV
    )
    assert result.returncode == 0, result.stderr
    from minigpt.checkpoint import load_checkpoint
    from minigpt.sampling import Sampling

    checkpoint = load_checkpoint(instruct_checkpoint)
    expected = [checkpoint.generate(q, 20, Sampling(temperature=0))[0] for q in ("What is a camel?", "Name a fish.")]
    assert result.stdout == "".join(answer + "\n" for answer in expected)  # the blank line is skipped
    assert "note" not in result.stderr


@pytest.mark.slow
def test_chat_on_a_plain_checkpoint_completes_text_and_says_so(pretrained: Path, minigpt, monkeypatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("ROMEO:\nJULIET: ¿\n"))
    result = minigpt("chat", f"--ckpt_path={pretrained}", "--max_new_tokens=10", "--seed=0")
    assert result.returncode == 0
    assert "was not instruction-tuned" in result.stderr and "plain text" in result.stderr
    # The unknown character is reported for its line only; the first line was answered.
    assert "outside the tokenizer's vocabulary: '¿'" in result.stderr
    assert len(result.stdout.splitlines()[0]) <= 10


@pytest.mark.slow
def test_generate_streams_samples_and_reads_the_prompt_from_a_file(pretrained: Path, tmp_path: Path, minigpt) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("JULIET:")
    common = ["generate", f"--ckpt_path={pretrained}", "--max_new_tokens=15", "--seed=3"]
    from_file = minigpt(*common, f"--prompt_file={prompt}")
    assert from_file.returncode == 0 and from_file.stdout == minigpt(*common, "--prompt=JULIET:").stdout
    several = minigpt(*common, "--prompt=JULIET:", "--num_samples=3", "--top_p=0.9", "--repetition_penalty=1.3")
    samples = several.stdout.rstrip("\n").split("\n---\n")
    assert len(samples) == 3 and all(s.startswith("JULIET:") for s in samples)
    stopped = minigpt(*common, "--prompt=JULIET:", "--temperature=0", "--stop=e")
    assert "e" not in stopped.stdout[len("JULIET:") :]


@pytest.mark.slow
def test_generate_reads_the_prompt_from_stdin(pretrained: Path) -> None:
    args = ["generate", f"--ckpt_path={pretrained}", "--prompt_file=-", "--max_new_tokens=5", "--temperature=0"]
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", *args],
        input="ROMEO:",
        capture_output=True,
        text=True,
        timeout=300,
        env=CHECKOUT_ENV,
    )
    assert result.returncode == 0 and result.stdout.startswith("ROMEO:") and len(result.stdout) == 6 + 5 + 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--top_p=0", r"top_p must be in (0, 1]"),
        ("--top_p=1.5", "top_p must be in"),
        ("--prompt=", "the prompt is empty"),
        ("--prompt_style=chatml", "--prompt_style: unknown prompt style 'chatml'"),
        ("--prompt_file=nowhere.txt", "--prompt_file: nowhere.txt does not exist"),
    ],
)
def test_bad_generate_input_is_one_line(pretrained: Path, minigpt, flag: str, message: str) -> None:
    assert message in one_line_error(minigpt("generate", f"--ckpt_path={pretrained}", flag))


@pytest.mark.slow
def test_a_refused_prompt_prints_nothing_before_the_error(pretrained: Path, minigpt) -> None:
    result = minigpt("generate", f"--ckpt_path={pretrained}", "--prompt=ROMEO: ¿é?")
    assert "--prompt: text has characters outside the tokenizer's vocabulary: '¿é'" in one_line_error(result)
    # A terminal shows stdout and stderr together: an echoed prompt would run into the error line.
    assert result.stdout == ""


@pytest.mark.slow
def test_long_prompt_is_cut_with_a_warning(pretrained: Path, minigpt) -> None:
    result = minigpt("generate", f"--ckpt_path={pretrained}", "--prompt=" + "ROMEO: " * 10, "--max_new_tokens=3")
    assert result.returncode == 0
    assert "minigpt: warning: the prompt has 70 tokens, more than the model's context of 32" in result.stderr


@pytest.mark.slow
def test_instruct_config_tunes_a_bpe_checkpoint_with_its_tokenizer(corpus: Path, tmp_path: Path, minigpt) -> None:
    from minigpt.checkpoint import load_checkpoint
    from minigpt.constants import IGNORE_INDEX
    from minigpt.sampling import Sampling

    bpe = {"data.tokenizer.kind": "regex-bpe", "data.tokenizer.vocab_size": 300, "data.block_size": 128}
    bpe["trainer.default_root_dir"] = "pre"
    assert run_main(tiny_fit_args(corpus, max_steps=10, **bpe)) == 0
    pretrained = tmp_path / "pre" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    small = {
        "trainer.max_steps": 15,
        "trainer.val_check_interval": 15,
        "trainer.log_every_n_steps": 1,
        "trainer.enable_progress_bar": "false",
        "trainer.callbacks.max_new_tokens": 8,
        "data.path": DOLLY_FIXTURE,
        "data.block_size": 128,
        "data.batch_size": 4,
        "data.val_fraction": 0.34,
        "sample.tokens": 8,
    }
    args = ["fit", f"--config={REPO / 'configs/instruct.yaml'}", *(f"--{k}={v}" for k, v in small.items())]
    result = minigpt(*args, f"--ckpt_path={pretrained}")
    assert result.returncode == 0, result.stderr
    tuned = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    before, after = load_checkpoint(pretrained), load_checkpoint(tuned)
    # The checkpoint's tokenizer, not a new one: the pretrained embeddings keep their meaning.
    assert after.tokenizer.to_json() == before.tokenizer.to_json() and after.tokenizer.kind == "regex-bpe"
    assert after.prompt_style == "alpaca-short" and after.model.config.n_embd == before.model.config.n_embd
    answer = after.generate("Name a fish.", 8, Sampling(temperature=0))[0]
    assert isinstance(answer, str)
    # The evaluation command: the same config validates the tuned checkpoint.
    validate_args = [a for a in args[1:] if not a.startswith(("--trainer.max_steps", "--trainer.val_check"))]
    validated = minigpt("validate", *validate_args, f"--ckpt_path={tuned}")
    assert validated.returncode == 0, validated.stderr
    assert all(metric in validated.stdout for metric in ("val/loss", "val/perplexity", "val/rougeL"))
    # Responses end with the BPE's own end-of-text token, and only they are scored.
    from minigpt.data import Dolly

    data = Dolly(
        path=str(DOLLY_FIXTURE),
        block_size=128,
        val_fraction=0.34,
        prompt_style="alpaca-short",
        tokenizer_from=str(pretrained),
    )
    example = data.examples("train")[0]
    eot = before.tokenizer.eot_id
    assert eot is not None and (example.labels[-1] == eot or len(example.inputs) == 128)
    assert example.labels[0] == IGNORE_INDEX and before.tokenizer.decode(example.inputs).startswith("### Instruction:")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--help"], "usage: minigpt {fit,validate,test,"),
        (["tokenizer", "--help"], "usage: minigpt tokenizer {train,compare}"),
        (["tokenizer", "train", "--help"], "--kind {bpe,regex-bpe,char"),  # and any kind a test registers
        (["generate", "--help"], "most tokens to generate (default: 500)"),
        (["chat", "--help"], "(default: 0.8)"),
        (["fit", "--data.tokenizer.help"], "--data.tokenizer.kind KIND"),
        # A model field's help is the docstring under it in GPTConfig (minigpt.field_docs).
        (["fit", "--help"], "Transformer blocks. (type: int, default: 6)"),
        (["fit", "--model.lora.help", "LoRAConfig"], "Rank of each adapter"),
    ],
)
def test_help_answers_and_exits_zero(args: list[str], shown: str, capsys: pytest.CaptureFixture) -> None:
    try:
        main(args)
    except SystemExit as exit:
        assert exit.code in (0, None)
    assert shown in capsys.readouterr().out


@pytest.mark.slow
def test_version_answers_from_the_package_metadata_without_torch() -> None:
    script = "\n".join(
        [
            "import sys",
            "from minigpt.cli import main",
            "try:",
            "    main(['--version'])",
            "except SystemExit:",
            "    print('torch' in sys.modules)",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=CHECKOUT_ENV, timeout=60
    )
    declared = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), flags=re.MULTILINE)
    assert result.stdout.splitlines() == [f"minigpt {declared.group(1)}", "False"], result.stderr
