"""The modern options through the real commands: train, resume, generate, fine-tune with freezing,
export, all with rotary positions, RMSNorm, QK-norm, a gated MLP, an untied head and Muon."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_fit_args
from test_training import scalars

from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main
from minigpt.sampling import GREEDY

# Every test here trains a model: the slow tier.
pytestmark = pytest.mark.slow

MODERN = {
    "model.gpt.position": "rope",
    "model.gpt.norm": "rmsnorm",
    "model.gpt.qk_norm": "true",
    "model.gpt.mlp": "swiglu",
    "model.gpt.tie_embeddings": "false",
    "model.gpt.zero_init_proj": "true",
    "model.gpt.bias": "false",
    "model.optimizer": "muon",
    "model.muon_lr": 0.02,
    "model.lr_decay_steps": 20,
}


@pytest.fixture(scope="module")
def modern_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("modern")
    corpus = root / "corpus.txt"
    corpus.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 150)
    main(tiny_fit_args(corpus, max_steps=20, **MODERN, **{"trainer.default_root_dir": root}))
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def test_a_modern_run_learns_and_its_checkpoint_generates(modern_checkpoint: Path) -> None:
    losses = scalars(modern_checkpoint.parents[1], "train/loss")
    assert losses[20] < losses[1] - 0.5
    checkpoint = load_checkpoint(modern_checkpoint)
    config = checkpoint.model.config
    assert (config.position, config.norm, config.mlp, config.qk_norm, config.tie_embeddings) == (
        "rope", "rmsnorm", "swiglu", True, False
    )  # fmt: skip
    assert "wpe" not in checkpoint.model.transformer
    # Greedy text through the KV cache equals text without it.
    from minigpt.generation import generate_tokens

    ids = torch.tensor([checkpoint.tokenizer.encode("ROMEO:")])
    cached = [t.item() for t in generate_tokens(checkpoint.model, ids, 40, GREEDY)]
    uncached = [t.item() for t in generate_tokens(checkpoint.model, ids, 40, GREEDY, use_cache=False)]
    assert cached == uncached


def test_fine_tuning_a_modern_checkpoint_with_frozen_embeddings(modern_checkpoint: Path, tmp_path: Path) -> None:
    corpus = modern_checkpoint.parents[3] / "corpus.txt"  # its own alphabet: the vocabulary stays as it is
    config = tmp_path / "freeze.yaml"
    parts = ["embeddings", "blocks[:1]"]
    callback = {"class_path": "minigpt.callbacks.freezing.FreezeLayers", "init_args": {"parts": parts}}
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    args = [a for a in tiny_fit_args(corpus, max_steps=5) if not a.startswith(("--model.n_", "fit"))]
    main(["fit", f"--config={config}", *args, "--finetune=true", f"--ckpt_path={modern_checkpoint}"])
    before = load_checkpoint(modern_checkpoint).model.state_dict()
    after = load_checkpoint(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").model.state_dict()
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert "transformer.wte.weight" not in moved and not any(name.startswith("transformer.h.0.") for name in moved)
    assert "lm_head.weight" in moved and any(name.startswith("transformer.h.1.") for name in moved)


def test_a_modern_checkpoint_exports_as_qwen3_with_the_same_logits(modern_checkpoint: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    main(["export", f"--ckpt_path={modern_checkpoint}", f"--out={tmp_path / 'hf'}"])
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(theirs).__name__ == "Qwen3ForCausalLM"
    ours = load_checkpoint(modern_checkpoint).model.eval()
    ids = torch.randint(
        0, ours.config.vocab_size, (2, ours.config.block_size), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ours(ids), atol=1e-4, rtol=0)


def test_an_option_export_cannot_write_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 50)
    relu2 = {**MODERN, "model.gpt.mlp": "relu2", "trainer.default_root_dir": tmp_path}
    main(tiny_fit_args(corpus, max_steps=2, **relu2))
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as exit:
        main(["export", f"--ckpt_path={checkpoint}", f"--out={tmp_path / 'hf'}"])
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("minigpt: error: no Hugging Face architecture has this model's model.gpt.mlp: relu2")
    assert "\n" not in error and not (tmp_path / "hf").exists()
