"""Every user-facing command, fed bad input: one clear line, a non-zero exit, nothing lost.

Each case runs `minigpt ...` in a workspace that already holds a finished run (its logs and
checkpoints), the corpus and a trained tokenizer file; afterwards every one of those files must
be byte-for-byte what it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_fit_args

from minigpt.cli import main

Case = Callable[[Path], list[str]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    corpus = root / "corpus.txt"
    corpus.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 150)
    other = root / "other.txt"
    other.write_text("0123456789 +-*/=\n" * 600)  # a different alphabet: another vocabulary
    (root / "empty.txt").write_text("")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (root / "truncated.ckpt").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    (root / "bad.yaml").write_text("model:\n  n_layers: 4\n")
    (root / "old.yaml").write_text("model:\n  preset: nano\n")
    (root / "invalid.yaml").write_text("model:\n  n_layer: [2\n")
    (root / "a_file").write_text("a file, not a folder")
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, root / "foreign.ckpt")
    good = '{"instruction": "Add.", "context": "", "response": "2", "category": "open_qa"}\n'
    (root / "bad.jsonl").write_text(good * 3 + '{"instruction": "No response here."}\n' + good)
    (root / "good.jsonl").write_text(good * 4)
    main([*tiny_fit_args(corpus, max_steps=10), f"--trainer.default_root_dir={root}"])
    main(["tokenizer", "train", "--kind=char", f"--input={corpus}", f"--output={root / 'tok.json'}"])
    return root


def fit(workspace: Path, *extra: str, corpus: str = "corpus.txt") -> list[str]:
    return [*tiny_fit_args(workspace / corpus, max_steps=2), f"--trainer.default_root_dir={workspace}", *extra]


def instruct(workspace: Path, records: str) -> list[str]:
    args = fit(workspace, "--data=minigpt.data.InstructDataModule", f"--data.path={workspace / records}")
    return [arg for arg in args if not arg.startswith(("--data.path=" + str(workspace / "corpus"), "--data.max_val"))]


def last_checkpoint(workspace: Path) -> Path:
    return workspace / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


CASES: dict[str, tuple[Case, str]] = {
    # fit: data
    "fit, missing corpus": (lambda w: fit(w, corpus="absent.txt"), "absent.txt does not exist"),
    "fit, empty corpus": (lambda w: fit(w, corpus="empty.txt"), "empty.txt is empty"),
    "fit, binary corpus": (lambda w: fit(w, corpus="binary.txt"), "is not UTF-8 text (bad byte 0x80 at offset 128"),
    "fit, folder as corpus": (lambda w: fit(w, f"--data.path={w}"), "is not a file"),
    "fit, corpus shorter than a window": (lambda w: fit(w, "--data.block_size=100000"), "fewer than block_size + 1"),
    # fit: configuration
    "fit, unknown YAML key": (lambda w: fit(w, f"--config={w / 'bad.yaml'}"), "n_layers"),
    "fit, a YAML key of an earlier version": (
        lambda w: fit(w, f"--config={w / 'old.yaml'}"),
        "model.preset moved to model.gpt (write the preset's values there",
    ),
    "fit, wrong type": (lambda w: fit(w, "--trainer.max_steps=lots"), "max_steps"),
    "fit, missing config file": (lambda w: fit(w, f"--config={w / 'nope.yaml'}"), "nope.yaml does not exist"),
    "fit, invalid YAML": (lambda w: fit(w, f"--config={w / 'invalid.yaml'}"), "invalid.yaml is not valid YAML"),
    "fit, misspelled data class": (
        lambda w: fit(w, "--data=minigpt.data.TinyShakspeare"),
        "minigpt.data.TinyShakspeare is not a data module; choose one of",
    ),
    "fit, a key of an earlier version": (
        lambda w: fit(w, "--model.n_layer=3"),
        "model.n_layer moved to model.gpt.n_layer",
    ),
    "fit, a context shorter than the data's windows": (
        lambda w: fit(w, "--model.gpt.block_size=16"),
        "model.gpt.block_size is 16 but data.block_size is 32; raise it or leave it unset",
    ),
    "fit, negative max_steps": (lambda w: fit(w, "--trainer.max_steps=-5"), "must be a non-negative integer"),
    "fit, no config": (lambda w: ["fit"], "minigpt fit needs a config: pass --config FILE"),
    "fit, folder as checkpoint": (lambda w: fit(w, f"--ckpt_path={w}"), "is a folder; pass a .ckpt file"),
    "fit, n_embd not divisible by n_head": (
        lambda w: fit(w, "--model.gpt.n_head=3"),
        "must be divisible by model.gpt.n_head",
    ),
    "fit, block_size 0": (lambda w: fit(w, "--data.block_size=0"), "data.block_size must be a positive integer"),
    "fit, unknown lr schedule": (lambda w: fit(w, "--model.lr_schedule=wavy"), "unknown model.lr_schedule 'wavy'"),
    "fit, lr cooldown 0": (lambda w: fit(w, "--model.lr_cooldown=0"), "model.lr_cooldown is a fraction of the run"),
    "fit, no CPU threads": (lambda w: fit(w, "--cpu.threads=0"), "cpu.threads must be 1 or more, got 0"),
    "fit, unwritable log folder": (
        lambda w: fit(w, f"--trainer.default_root_dir={w / 'a_file' / 'runs'}"),
        "cannot write run output",
    ),
    # fit: checkpoints
    "fit, missing checkpoint": (lambda w: fit(w, f"--ckpt_path={w / 'gone.ckpt'}"), "gone.ckpt does not exist"),
    "fit, truncated checkpoint": (
        lambda w: fit(w, f"--ckpt_path={w / 'truncated.ckpt'}"),
        "is not a readable checkpoint",
    ),
    "fit, checkpoint of another vocabulary": (
        lambda w: fit(w, f"--ckpt_path={last_checkpoint(w)}", corpus="other.txt"),
        "was trained with a char tokenizer of",
    ),
    "fit, malformed instruction record": (lambda w: instruct(w, "bad.jsonl"), "line 4 has no 'response' field"),
    "fit, missing init_from": (
        lambda w: fit(w, f"--model.init_from={w / 'gone.ckpt'}"),
        "error: model.init_from: ",  # the key the user set, then the path
    ),
    "fit, truncated init_from": (
        lambda w: fit(w, f"--model.init_from={w / 'truncated.ckpt'}"),
        "error: model.init_from: ",  # not data.tokenizer_from, which the CLI links to it
    ),
    "fit, instruction tokenizer from a YAML file": (
        lambda w: [*instruct(w, "good.jsonl"), f"--data.tokenizer_from={w / 'bad.yaml'}"],
        "error: data.tokenizer_from: ",
    ),
    # validate: its own parser, its own help
    "validate, unknown option": (
        lambda w: ["validate", *fit(w, f"--ckpt_path={last_checkpoint(w)}", "--model.gpt.n_embdd=8")[1:]],
        "unknown option --model.gpt.n_embdd (did you mean model.gpt.n_embd?); `minigpt validate --help`",
    ),
    # tokenizer
    "tokenizer train, missing input": (
        lambda w: [
            "tokenizer",
            "train",
            "--kind=bpe",
            "--vocab_size=300",
            f"--input={w / 'absent.txt'}",
            f"--output={w / 'new.json'}",
        ],
        "absent.txt does not exist",
    ),
    "tokenizer train, vocabulary below the byte alphabet": (
        lambda w: [
            "tokenizer",
            "train",
            "--kind=bpe",
            "--vocab_size=100",
            f"--input={w / 'corpus.txt'}",
            f"--output={w / 'tok.json'}",
        ],
        "smaller than the byte alphabet",
    ),
    "tokenizer train, binary input": (
        lambda w: ["tokenizer", "train", "--kind=char", f"--input={w / 'binary.txt'}", f"--output={w / 'tok.json'}"],
        "not UTF-8",
    ),
    # generate
    "generate, missing checkpoint": (lambda w: ["generate", f"--ckpt_path={w / 'gone.ckpt'}"], "does not exist"),
    "generate, truncated checkpoint": (
        lambda w: ["generate", f"--ckpt_path={w / 'truncated.ckpt'}"],
        "is not a readable checkpoint",
    ),
    "generate, a torch file not written by minigpt": (
        lambda w: ["generate", f"--ckpt_path={w / 'foreign.ckpt'}"],
        "is not a minigpt checkpoint",
    ),
    "generate, a YAML file as checkpoint": (
        lambda w: ["generate", f"--ckpt_path={w / 'bad.yaml'}"],
        "is not a readable checkpoint",
    ),
    "generate, prompt outside the vocabulary": (
        lambda w: ["generate", f"--ckpt_path={last_checkpoint(w)}", "--prompt=ROMEO: ¿é?"],
        "outside the tokenizer's vocabulary: '¿é'",
    ),
    "generate, negative temperature": (
        lambda w: ["generate", f"--ckpt_path={last_checkpoint(w)}", "--temperature=-1"],
        "temperature must be 0 (greedy) or more",
    ),
    "generate, top_k 0": (lambda w: ["generate", f"--ckpt_path={last_checkpoint(w)}", "--top_k=0"], "top_k"),
    "generate, top_p above 1": (
        lambda w: ["generate", f"--ckpt_path={last_checkpoint(w)}", "--top_p=1.5"],
        "top_p must be in (0, 1]",
    ),
    "generate, missing prompt file": (
        lambda w: ["generate", f"--ckpt_path={last_checkpoint(w)}", f"--prompt_file={w / 'absent.txt'}"],
        "--prompt_file",
    ),
    # chat
    "chat, missing checkpoint": (lambda w: ["chat", f"--ckpt_path={w / 'gone.ckpt'}"], "gone.ckpt does not exist"),
    "chat, truncated checkpoint": (
        lambda w: ["chat", f"--ckpt_path={w / 'truncated.ckpt'}"],
        "is not a readable checkpoint",
    ),
    "chat, negative temperature": (
        lambda w: ["chat", f"--ckpt_path={last_checkpoint(w)}", "--temperature=-1"],
        "temperature must be 0 (greedy) or more",
    ),
    # export
    "export, missing checkpoint": (
        lambda w: ["export", f"--ckpt_path={w / 'gone.ckpt'}", f"--out={w / 'hf'}"],
        "gone.ckpt does not exist",
    ),
    "export, output is a file": (
        lambda w: ["export", f"--ckpt_path={last_checkpoint(w)}", f"--out={w / 'a_file'}"],
        "is a file; pass a directory",
    ),
    "export, foreign checkpoint": (
        lambda w: ["export", f"--ckpt_path={w / 'foreign.ckpt'}", f"--out={w / 'hf'}"],
        "is not a minigpt checkpoint",
    ),
}


def snapshot(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, workspace: Path, capsys: pytest.CaptureFixture) -> None:
    build, expected = CASES[name]
    before = snapshot(workspace)
    with pytest.raises(SystemExit) as exit:
        main(build(workspace))
    assert exit.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "usage:" not in stderr, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("minigpt: error:")]
    assert len(errors) == 1, stderr[-2000:]
    assert expected in errors[0]
    after = snapshot(workspace)
    assert {path: after.get(path) for path in before} == before, "a failed command changed or removed files"


def test_every_documented_error_case_is_in_the_troubleshooting_page() -> None:
    readme = (REPO / "docs" / "troubleshooting.md").read_text()
    for phrase in (
        "does not exist",
        "is empty",
        "not UTF-8",
        "must be divisible by model.gpt.n_head",
        "is not a readable checkpoint",
        "cannot write run output",
        "outside the tokenizer's vocabulary",
    ):
        assert phrase in readme, phrase
