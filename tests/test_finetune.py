from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import LINES, SHARED_DATA, tiny_fit_args
from test_training import scalars

from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main
from minigpt.data import AceAttorney, TinyShakespeare
from minigpt.errors import MinigptError
from minigpt.model import GPTConfig
from minigpt.module import LanguageModel
from minigpt.pretrained import build_network
from minigpt.tokenizers import CharTokenizer

# Dialogue in the Ace Attorney format, with characters the play-script corpus lacks ("é…’!").
DIALOGUE = [
    "Phoenix:\nObjection! That café story doesn’t add up…\n",
    "Edgeworth:\nThe witness has testified. Your move, Wright.\n",
]


@pytest.fixture
def dialogue(tmp_path: Path) -> Path:
    path = tmp_path / "dialogue.txt"
    path.write_text("\n".join(DIALOGUE[i % 2] for i in range(300)), encoding="utf-8")
    return path


def finetune_args(dialogue: Path, ckpt: Path, max_steps: int = 20, **overrides: object) -> list[str]:
    # No model shape: it comes from the checkpoint. The fine-tune has its own learning rate.
    args = tiny_fit_args(dialogue, max_steps=max_steps, **{"model.learning_rate": 1e-3})
    args = [a for a in args if not a.startswith(("--model.gpt.n_layer", "--model.gpt.n_head", "--model.gpt.n_embd"))]
    return [*args, *(f"--{key}={value}" for key, value in overrides.items()), "--finetune=true", f"--ckpt_path={ckpt}"]


@pytest.mark.slow
def test_finetune_starts_at_step_zero_with_the_configs_values(pretrained: Path, dialogue: Path, tmp_path: Path) -> None:
    new_chars = set(dialogue.read_text(encoding="utf-8")) - set("".join(LINES))
    with pytest.warns(UserWarning, match=rf"has {len(new_chars)} characters outside the 42-character vocabulary"):
        main(finetune_args(dialogue, pretrained, max_steps=20))
    version = tmp_path / "lightning_logs" / "version_0"
    losses = scalars(version, "train/loss")
    # Step 0 to 20 although the pretraining checkpoint stands at step 30 (> max_steps).
    assert min(losses) == 1 and max(losses) == 20
    lrs = scalars(version, "train/lr")
    assert lrs[5] == pytest.approx(1e-3, rel=0.2)  # a fresh warmup to the fine-tune's own peak
    assert lrs[20] == pytest.approx(1e-4, rel=0.05)  # its own cosine, ending at its max_steps
    last = torch.load(version / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 20
    assert last["hyper_parameters"]["learning_rate"] == 1e-3
    assert last["hyper_parameters"]["init_from"] is None  # the checkpoint stands on its own
    assert last["minigpt"]["init_from"] == str(pretrained)
    # The vocabulary grew at the end: the pretraining ids keep their characters.
    base = load_checkpoint(pretrained).tokenizer
    tuned = load_checkpoint(version / "checkpoints" / "last.ckpt")
    assert tuned.tokenizer.chars[: base.vocab_size] == base.chars
    assert set(tuned.tokenizer.chars[base.vocab_size :]) == new_chars
    assert tuned.model.config.n_layer == 2 and tuned.model.config.vocab_size == base.vocab_size + len(new_chars)


@pytest.mark.slow
def test_finetune_weights_come_from_the_checkpoint(pretrained: Path, dialogue: Path) -> None:
    base = load_checkpoint(pretrained)
    network = build_network("gpt", GPTConfig(), str(pretrained), base.tokenizer.vocab_size + 4, 32)
    tuned, source = network.model.state_dict(), base.model.state_dict()
    for name, tensor in source.items():
        if name in ("transformer.wte.weight", "lm_head.weight"):
            assert torch.equal(tuned[name][: tensor.shape[0]], tensor)
            assert tuned[name].shape[0] == tensor.shape[0] + 4
        else:
            assert torch.equal(tuned[name], tensor), name


@pytest.mark.slow
def test_resuming_a_finetune_keeps_its_grown_vocabulary(pretrained: Path, dialogue: Path, tmp_path: Path) -> None:
    main(finetune_args(dialogue, pretrained, max_steps=10, **{"model.lr_decay_steps": 20}))
    tuned = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    # Without finetune the same flag resumes: the data module takes the checkpoint's tokenizer
    # (a fresh one from the text would number the characters differently).
    resume = [a for a in finetune_args(dialogue, tuned, max_steps=20) if a != "--finetune=true"]
    main(resume)
    resumed = scalars(tmp_path / "lightning_logs" / "version_1", "train/loss")
    assert min(resumed) == 11 and max(resumed) == 20
    assert load_checkpoint(tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt").tokenizer.chars == (
        load_checkpoint(tuned).tokenizer.chars
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model.gpt.n_layer": 3}, r"model.gpt.n_layer is 3 but model.init_from .* has 2; remove model.gpt.n_layer"),
        ({"data.block_size": 48}, r"data.block_size \(48\) is longer than the 32 positions of model.init_from"),
    ],
)
def test_finetune_config_that_contradicts_the_weights_is_refused(
    pretrained: Path, dialogue: Path, capsys: pytest.CaptureFixture, override: dict, message: str
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(finetune_args(dialogue, pretrained, **override))
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("minigpt: error: ")
    assert re.search(message, error), error


@pytest.mark.slow
def test_finetune_needs_exactly_one_source(pretrained: Path, dialogue: Path, capsys: pytest.CaptureFixture) -> None:
    no_source = [a for a in finetune_args(dialogue, pretrained) if not a.startswith("--ckpt_path")]
    with pytest.raises(SystemExit):
        main(no_source)
    assert "finetune: true needs starting weights" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*finetune_args(dialogue, pretrained), f"--model.init_from={pretrained}"])
    assert "give one of them" in capsys.readouterr().err


@pytest.mark.slow
def test_init_from_a_bigram_or_missing_checkpoint_is_refused(corpus: Path, tmp_path: Path) -> None:
    main(tiny_fit_args(corpus, max_steps=5, **{"model.arch": "bigram", "model.learning_rate": 0.05}))
    bigram = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.raises(MinigptError, match="holds a bigram model; fine-tuning starts from GPT checkpoints"):
        build_network("gpt", GPTConfig(), str(bigram), 30, 16)
    with pytest.raises(MinigptError, match=r"model.init_from: .*nope.ckpt does not exist"):
        build_network("gpt", GPTConfig(), str(tmp_path / "nope.ckpt"), 30, 16)


@pytest.mark.slow
def test_data_from_another_vocabulary_is_refused(pretrained: Path, dialogue: Path) -> None:
    module = LanguageModel(init_from=str(pretrained))
    # A data module that built its own vocabulary instead of taking the checkpoint's.
    tokenizer = CharTokenizer(sorted(set(dialogue.read_text(encoding="utf-8"))))
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(tokenizer=tokenizer, block_size=32))
    with pytest.raises(MinigptError, match=r"the data's tokenizer is not the one model\.init_from"):
        module.configure_model()


def test_ace_attorney_without_a_copy_says_how_to_provide_it() -> None:
    with pytest.raises(MinigptError, match=r"aceattorney/fine_tuning_input.txt found and it has no public download"):
        AceAttorney(block_size=32).prepare()


def test_ace_attorney_found_in_the_data_dir(tmp_path: Path, dialogue: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data" / "aceattorney").mkdir(parents=True)
    dialogue.rename(tmp_path / "data" / "aceattorney" / "fine_tuning_input.txt")
    monkeypatch.setenv("MINIGPT_DATA_DIR", str(tmp_path / "data"))
    data = AceAttorney(block_size=32)
    assert data.tokenizer is None and data.vocab_size == len(set("".join(DIALOGUE)))
    assert data.tokenizer.decode(data.split("train")[:8].tolist()) == "Phoenix:"


@pytest.mark.skipif(not (SHARED_DATA / "aceattorney").is_dir(), reason="no shared Ace Attorney copy")
def test_real_ace_attorney_grows_shakespeares_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIGPT_DATA_DIR", str(SHARED_DATA))
    shakespeare = TinyShakespeare(block_size=64)
    ace = AceAttorney(block_size=64)
    assert shakespeare.vocab_size == 65
    ace.tokenizer = shakespeare.tokenizer
    with pytest.warns(UserWarning, match=r"has 22 characters outside the 65-character vocabulary"):
        assert ace.vocab_size == 65 + 22
    text = (SHARED_DATA / "aceattorney" / "fine_tuning_input.txt").read_text(encoding="utf-8")
    assert ace.tokenizer.decode(ace.tokenizer.encode(text[:5000])) == text[:5000]


@pytest.mark.slow
def test_checkpoint_missing_weights_is_one_line(pretrained: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(pretrained, weights_only=True)
    del checkpoint["state_dict"]["model.transformer.h.1.mlp.c_fc.weight"]
    torch.save(checkpoint, tmp_path / "damaged.ckpt")
    with pytest.raises(MinigptError, match=r"damaged.ckpt has weights that do not fit its config \(Error"):
        build_network("gpt", GPTConfig(), str(tmp_path / "damaged.ckpt"), 42, 32)


@pytest.mark.slow
def test_lightning_cli_reads_ckpt_path_as_fine_tuning_expects(pretrained: Path, corpus: Path, tmp_path: Path) -> None:
    """Pins the LightningCLI behaviour `minigpt.lightning_cli.start_from_checkpoint` relies on:
    a --ckpt_path left set resumes with the checkpoint's hyperparameters merged over the config
    and the step restored; cleared by `finetune: true`, neither happens."""
    override = {"model.learning_rate": 1e-2, "model.lr_decay_steps": 40}
    main([*tiny_fit_args(corpus, max_steps=35, **override), f"--ckpt_path={pretrained}"])
    resumed = torch.load(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["hyper_parameters"]["learning_rate"] == 3e-3  # the checkpoint's, not the 1e-2 given
    assert resumed["global_step"] == 35 and min(scalars(tmp_path / "lightning_logs" / "version_0", "train/loss")) == 31
    main([*tiny_fit_args(corpus, max_steps=5, **override), "--finetune=true", f"--ckpt_path={pretrained}"])
    tuned = torch.load(tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert tuned["hyper_parameters"]["learning_rate"] == 1e-2 and tuned["global_step"] == 5
