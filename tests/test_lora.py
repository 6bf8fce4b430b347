"""LoRA fine-tuning: only the adapters train and are saved, resuming is exact, every command uses a
LoRA checkpoint directly, and the export loads in transformers and in PEFT with the same logits."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from conftest import LINES, REPO, tiny_fit_args
from lightning.pytorch import Callback
from test_families import save_family

from minigpt.checkpoint import Checkpoint, load_checkpoint, open_source
from minigpt.cli import main
from minigpt.errors import MinigptError
from minigpt.lightning_cli import run_lightning_cli
from minigpt.lora import LoRAConfig, LoRALinear, add_adapters, merge_adapters
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import Sampling

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def lora_args(corpus: Path, source: Path, root: Path, max_steps: int = 10, **overrides: object) -> list[str]:
    """configs/finetune-lora.yaml on `corpus` from `source`, shortened."""
    values = {
        "data": "minigpt.data.TextDataModule",
        "data.path": corpus,
        "data.block_size": 32,
        "data.batch_size": 4,
        "data.max_val_windows": 4,
        "trainer.max_steps": max_steps,
        "trainer.val_check_interval": 5,
        "trainer.log_every_n_steps": 1,
        "trainer.enable_progress_bar": "false",
        "trainer.enable_model_summary": "false",
        "trainer.default_root_dir": root,
        "model.warmup_steps": 2,
        "sample.tokens": 4,
        **overrides,
    }
    return [
        "fit",
        f"--config={REPO / 'configs' / 'finetune-lora.yaml'}",
        *(f"--{key}={value}" for key, value in values.items()),
        f"--ckpt_path={source}",
    ]


def last_of(root: Path, version: int = 0) -> Path:
    return root / "lightning_logs" / f"version_{version}" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def trained(pretrained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-step LoRA fine-tune of the session's tiny checkpoint on its own corpus (no new tokens)."""
    root = tmp_path_factory.mktemp("lora")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(LINES[(i * 3) % len(LINES)] for i in range(300)))
    main(lora_args(corpus, pretrained, root))
    return last_of(root)


def test_an_adapter_starts_at_the_base_model_and_merges_exactly() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 20, (2, 16))
    before = model(ids)
    add_adapters(model, LoRAConfig(rank=4))
    assert torch.equal(model(ids), before)  # B starts at zero
    for layer in model.modules():
        if isinstance(layer, LoRALinear):
            torch.nn.init.normal_(layer.lora_b, std=0.1)
    adapted = model(ids)
    assert (adapted - before).abs().max() > 1e-3
    assert torch.allclose(merge_adapters(model)(ids), adapted, atol=1e-5)
    assert not any(isinstance(layer, LoRALinear) for layer in model.modules())


@pytest.mark.slow
def test_only_the_adapters_train_and_the_checkpoint_holds_only_them(pretrained: Path, trained: Path) -> None:
    checkpoint = torch.load(trained, weights_only=True)
    names = list(checkpoint["state_dict"])
    assert names and all(name.endswith((".lora_a", ".lora_b")) for name in names)
    # Rank 8 on a 32-wide model is a large share of it; benchmarks/lora_cost.py measures real sizes.
    stored = sum(tensor.numel() for tensor in checkpoint["state_dict"].values())
    base = sum(tensor.numel() for tensor in torch.load(pretrained, weights_only=True)["state_dict"].values())
    assert stored < base / 2
    lora = checkpoint["minigpt"]["lora"]
    assert lora["base"] == str(pretrained) and lora["config"]["rank"] == 8
    # The base weights are the base's, untouched: merging zero adapters would give them back.
    adapted = open_source(trained).adapted_network()
    base = load_checkpoint(pretrained).model.state_dict()
    for name, tensor in adapted.state_dict().items():
        if not name.endswith((".lora_a", ".lora_b")):
            assert torch.equal(tensor, base[name]), name
    assert any(layer.lora_b.abs().max() > 0 for layer in adapted.modules() if isinstance(layer, LoRALinear))


def test_generate_uses_a_lora_checkpoint_directly(trained: Path, capsys: pytest.CaptureFixture) -> None:
    main(["generate", f"--ckpt_path={trained}", "--prompt=ROMEO:", "--temperature=0", "--max_new_tokens=30"])
    text = capsys.readouterr().out
    # The adapters unmerged, as they trained, generate the same text.
    adapted = open_source(trained).adapted_network().eval()
    unmerged = Checkpoint(model=adapted, tokenizer=load_checkpoint(trained).tokenizer)
    greedy = unmerged.generate("ROMEO:", 30, Sampling(temperature=0.0))[0]
    assert text == "ROMEO:" + greedy + "\n"


def test_export_merges_and_writes_a_peft_adapter_with_the_same_logits(
    pretrained: Path, trained: Path, tmp_path: Path
) -> None:
    main(["export", f"--ckpt_path={trained}", f"--out={tmp_path / 'merged'}"])
    main(["export", f"--ckpt_path={pretrained}", f"--out={tmp_path / 'base'}"])
    adapted = open_source(trained).adapted_network().eval()
    ids = torch.tensor([load_checkpoint(trained).tokenizer.encode(LINES[0])[:24]])
    with torch.no_grad():
        ours = adapted(ids)
        merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(ids).logits
        base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
        with_adapter = peft.PeftModel.from_pretrained(base, tmp_path / "merged" / "adapter").eval()(ids).logits
    assert (merged - ours).abs().max() <= 1e-4
    assert (with_adapter - ours).abs().max() <= 1e-4
    config = json.loads((tmp_path / "merged" / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(pretrained) and config["r"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("family", ["smollm2", "qwen3"])
def test_a_hugging_face_model_fine_tunes_with_lora_and_peft_reads_the_adapter(family: str, tmp_path: Path) -> None:
    source = save_family(family, tmp_path / family)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES * 50))
    main(lora_args(corpus, source, tmp_path, max_steps=4, **{"model.lora.rank": 4}))
    main(["export", f"--ckpt_path={last_of(tmp_path)}", f"--out={tmp_path / 'out'}"])
    adapted = open_source(last_of(tmp_path)).adapted_network().eval()
    ids = torch.tensor([load_checkpoint(source).tokenizer.encode(LINES[1])[:16]])
    with torch.no_grad():
        ours = adapted(ids)
        base = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
        theirs = peft.PeftModel.from_pretrained(base, tmp_path / "out" / "adapter").eval()(ids).logits
        merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32)(ids).logits
    assert (theirs - ours).abs().max() <= 1e-4 and (merged - ours).abs().max() <= 1e-4


class StopAt(Callback):
    """Sends this process SIGTERM after step `step`, as a scheduler's pre-emption would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if trainer.global_step == self.step:
            signal.raise_signal(signal.SIGTERM)


@pytest.mark.slow
def test_a_resumed_lora_run_ends_with_the_adapters_of_an_uninterrupted_one(pretrained: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES[(i * 5) % len(LINES)] for i in range(300)))
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_lightning_cli(lora_args(corpus, pretrained, whole, **{"model.lora.dropout": 0.1}))
    args = lora_args(corpus, pretrained, parts, **{"model.lora.dropout": 0.1})
    with pytest.raises(SystemExit):
        run_lightning_cli(args, extra_callbacks=[StopAt(7)])
    # The same command resumes it, the flag saying so: --ckpt_path is the run's own checkpoint.
    run_lightning_cli([*args[:-1], "--finetune=false", f"--ckpt_path={last_of(parts)}"])
    expected = torch.load(last_of(whole), weights_only=True)["state_dict"]
    resumed = torch.load(last_of(parts, version=1), weights_only=True)["state_dict"]
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name


@pytest.mark.slow
def test_new_characters_train_their_embeddings_beside_the_adapters(pretrained: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "dialogue.txt"
    corpus.write_text("\n".join(["Phoenix:\nObjection! Café…\n"] * 200), encoding="utf-8")
    with pytest.warns(UserWarning, match="characters outside the 42-character vocabulary"):
        main(lora_args(corpus, pretrained, tmp_path, max_steps=4))
    names = torch.load(last_of(tmp_path), weights_only=True)["state_dict"].keys()
    assert "model.transformer.wte.weight" in names
    assert all(name.endswith((".lora_a", ".lora_b")) or "wte" in name or "lm_head" in name for name in names)
    main(["export", f"--ckpt_path={last_of(tmp_path)}", f"--out={tmp_path / 'out'}"])
    assert (tmp_path / "out" / "config.json").is_file() and not (tmp_path / "out" / "adapter").exists()


FREEZING = "minigpt.callbacks.freezing"
BAD = {
    "a target that matches no layer": ({"model.lora.targets": "[attn.c_qkv]"}, "'attn.c_qkv' matches no layer"),
    "rank 0": ({"model.lora.rank": 0}, "model.lora.rank must be a positive integer, got 0"),
    "a tied head as target": ({"model.lora.targets": "[lm_head]"}, "lm_head is the token embedding's transpose"),
    "gradual unfreezing": (
        {"trainer.callbacks": f"[{{class_path: {FREEZING}.GradualUnfreezing}}]"},
        "GradualUnfreezing unfreezes base weights, which model.lora keeps frozen",
    ),
    "freezing the adapted attention": (
        {"trainer.callbacks": f"[{{class_path: {FREEZING}.FreezeLayers, init_args: {{parts: [attention]}}}}]"},
        "FreezeLayers parts ['attention'] hold the LoRA adapters",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD))
def test_bad_lora_settings_are_one_line(
    case: str, pretrained: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides, message = BAD[case]
    with pytest.raises(SystemExit) as exit:
        main(lora_args(corpus, pretrained, tmp_path, **overrides))
    assert exit.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("minigpt: error:")]
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.slow
def test_lora_from_scratch_is_refused(corpus: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(tiny_fit_args(corpus, **{"model.lora.rank": 4}))
    assert "model.lora adapts starting weights" in capsys.readouterr().err


@pytest.mark.slow
def test_a_lora_checkpoint_without_its_base_says_so(
    pretrained: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = tmp_path / "base.ckpt"
    base.write_bytes(pretrained.read_bytes())
    main(lora_args(corpus, base, tmp_path, max_steps=5))
    base.unlink()
    for command in (
        ["generate", f"--ckpt_path={last_of(tmp_path)}", "--max_new_tokens=3"],
        lora_args(corpus, last_of(tmp_path), tmp_path, max_steps=8, finetune="false"),
    ):
        with pytest.raises(SystemExit):
            main(command)
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("minigpt: error:") and f"LoRA adapters for the base weights {base}" in error, error
    # A changed base is refused too: the adapters only fit the weights they were trained on.
    torch.save({**torch.load(pretrained, weights_only=True), "epoch": 99}, base)
    with pytest.raises(MinigptError, match="has changed since"):
        load_checkpoint(last_of(tmp_path))


@pytest.mark.slow
def test_predict_and_validate_take_a_lora_checkpoint(
    trained: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ROMEO:\nJULIET:\n", encoding="utf-8")
    answers = tmp_path / "answers.jsonl"
    main(
        [
            "predict",
            f"--ckpt_path={trained}",
            f"--data.prompts={prompts}",
            f"--predictions.path={answers}",
            "--data.sampling.temperature=0",
            "--data.max_new_tokens=12",
        ]
    )
    merged = load_checkpoint(trained)
    for line in answers.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert record["completion"] == merged.generate(record["prompt"], 12, Sampling(temperature=0.0))[0]
    main(
        [
            "validate",
            f"--config={REPO / 'configs' / 'finetune-lora.yaml'}",
            "--finetune=false",
            f"--ckpt_path={trained}",
            "--data=minigpt.data.TextDataModule",
            f"--data.path={corpus}",
            "--data.block_size=32",
            "--data.max_val_windows=4",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert "val/loss" in capsys.readouterr().out
