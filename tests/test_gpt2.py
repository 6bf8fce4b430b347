from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import LINES, tiny_fit_args

from minigpt.bigram import BigramConfig, BigramLM
from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main
from minigpt.errors import MinigptError
from minigpt.huggingface.export import export_model
from minigpt.model import GPT, GPTConfig
from minigpt.pretrained import load_pretrained
from minigpt.sampling import Sampling
from minigpt.tokenizers import CharTokenizer, PretrainedTokenizer, tokenizer_from_json

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture
def tiny_gpt2(tmp_path: Path) -> Path:
    """A randomly initialised 2-layer GPT-2 with a small byte-level BPE, saved as the hub's files."""
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(LINES * 20, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    directory = tmp_path / "tiny-gpt2"
    config = transformers.GPT2Config(
        vocab_size=bpe.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    (directory / "tokenizer.json").write_text(bpe._tokenizer.to_str(), encoding="utf-8")
    return directory


def hf_logits(directory: Path, ids: torch.Tensor) -> torch.Tensor:
    model = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()
    with torch.no_grad():
        return model(ids).logits


def test_gpt2_weights_load_with_the_same_logits(tiny_gpt2: Path) -> None:
    source = load_pretrained(str(tiny_gpt2))
    assert source.config.gelu == "tanh" and source.config.n_layer == 2
    model = GPT(source.config).eval()
    model.load_state_dict(source.state_dict)
    ids = torch.randint(0, source.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(ids)
    torch.testing.assert_close(ours, hf_logits(tiny_gpt2, ids), atol=1e-4, rtol=0)
    text = "ROMEO:\nBut soft!"
    assert source.tokenizer.decode(source.tokenizer.encode(text)) == text


@pytest.mark.slow
def test_finetune_gpt2_from_a_directory_keeps_its_tokenizer(tiny_gpt2: Path, corpus: Path, tmp_path: Path) -> None:
    args = tiny_fit_args(corpus, max_steps=10, **{"model.init_from": tiny_gpt2, "data.block_size": 32})
    main([a for a in args if not a.startswith(("--model.gpt.n_layer", "--model.gpt.n_head", "--model.gpt.n_embd"))])
    tuned = load_checkpoint(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    assert isinstance(tuned.tokenizer, PretrainedTokenizer)
    assert tuned.tokenizer.to_json() == PretrainedTokenizer.from_file(tiny_gpt2 / "tokenizer.json").to_json()
    assert tuned.model.config.gelu == "tanh" and tuned.model.config.block_size == 64


@pytest.mark.slow
def test_export_loads_in_transformers_with_the_same_logits(pretrained: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    main(["export", f"--ckpt_path={pretrained}", f"--out={out}"])
    ours = load_checkpoint(pretrained)
    ids = torch.tensor([ours.tokenizer.encode("ROMEO:\nBut soft, what light")])
    with torch.no_grad():
        expected = ours.model(ids)
    torch.testing.assert_close(hf_logits(out, ids), expected, atol=1e-4, rtol=0)
    # The exported tokenizer.json numbers characters as minigpt does.
    hf_tokenizer = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    assert hf_tokenizer.encode("ROMEO:\nBut soft").ids == ours.tokenizer.encode("ROMEO:\nBut soft")
    assert hf_tokenizer.decode(ids[0].tolist()) == "ROMEO:\nBut soft, what light"


def test_bias_free_model_exports_and_comes_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=False)).eval()
    export_model(model, CharTokenizer(list("abcdefghijklmnopqrst")), tmp_path / "out")
    ids = torch.randint(0, 20, (1, 16))
    with torch.no_grad():
        expected = model(ids)
    torch.testing.assert_close(hf_logits(tmp_path / "out", ids), expected, atol=1e-4, rtol=0)
    back = load_pretrained(str(tmp_path / "out"))
    again = GPT(back.config).eval()
    again.load_state_dict(back.state_dict)
    with torch.no_grad():
        torch.testing.assert_close(again(ids), expected, atol=1e-5, rtol=0)
    assert tokenizer_from_json(back.tokenizer.to_json()).decode([0, 1, 19]) == "abt"


def test_gpt2_directory_missing_files_is_one_line(tiny_gpt2: Path) -> None:
    (tiny_gpt2 / "model.safetensors").unlink()
    with pytest.raises(MinigptError, match=r"lacks model.safetensors; a model directory needs config.json, model"):
        load_pretrained(str(tiny_gpt2))


def test_gpt2_weights_missing_keys_are_named(tiny_gpt2: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(tiny_gpt2 / "model.safetensors")
    kept = {name: t for name, t in tensors.items() if ".h.1." not in name}
    save_file(kept, tiny_gpt2 / "model.safetensors")
    with pytest.raises(
        MinigptError, match=r"lacks weights h\.1\.attn\.c_attn\.bias, .* and \d+ more; is it a complete"
    ):
        load_pretrained(str(tiny_gpt2))


def test_another_architecture_is_refused(tiny_gpt2: Path) -> None:
    config = json.loads((tiny_gpt2 / "config.json").read_text())
    (tiny_gpt2 / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    with pytest.raises(
        MinigptError, match="describes a 'mistral' model; minigpt loads gpt2, llama, qwen2, qwen3 weights"
    ):
        load_pretrained(str(tiny_gpt2))


def test_hub_name_offline_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        MinigptError, match=r"could not download 'gpt2' from the Hugging Face hub .* model.init_from=DIR"
    ):
        load_pretrained("gpt2")


def test_export_refuses_a_bigram_and_a_file_as_out(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(MinigptError, match="only GPT checkpoints export to Hugging Face format, not BigramLM"):
        export_model(BigramLM(BigramConfig(vocab_size=4)), CharTokenizer(list("abcd")), tmp_path / "out")
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit) as exit:
        main(["export", f"--ckpt_path={tmp_path / 'none.ckpt'}", f"--out={tmp_path / 'taken'}"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip() == f"minigpt: error: --out: {tmp_path / 'taken'} is a file; pass a directory"


@pytest.mark.slow
def test_a_hugging_face_directory_works_wherever_a_checkpoint_does(
    tiny_gpt2: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    prompt = "ROMEO:\nBut"
    # Python: the same greedy text as transformers' own generate on the same directory.
    ours = load_checkpoint(tiny_gpt2).generate(prompt, 12, Sampling(temperature=0))[0]
    hf_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tiny_gpt2 / "tokenizer.json"))
    model = transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2).eval()
    ids = torch.tensor([hf_tokenizer.encode(prompt)])
    with torch.no_grad():
        theirs = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert ours == hf_tokenizer.decode(theirs[0, ids.size(1) :].tolist())
    # generate and chat take the directory as --ckpt_path.
    main(["generate", f"--ckpt_path={tiny_gpt2}", f"--prompt={prompt}", "--temperature=0", "--max_new_tokens=12"])
    assert capsys.readouterr().out == prompt + ours + "\n"
    # validate evaluates it on a data module's text, with its own tokenizer.
    args = tiny_fit_args(corpus, **{"data.block_size": 32})
    args = [
        a
        for a in args
        if not a.startswith(("--model.gpt.n_layer", "--model.gpt.n_head", "--model.gpt.n_embd", "--trainer.max"))
    ]
    main(["validate", *args[1:], f"--ckpt_path={tiny_gpt2}"])
    assert "val/loss" in capsys.readouterr().out


@pytest.mark.slow
def test_a_model_folder_without_its_tokenizer_is_named_as_model_init_from(
    tiny_gpt2: Path, corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    (tiny_gpt2 / "tokenizer.json").unlink()
    with pytest.raises(SystemExit):
        main(tiny_fit_args(corpus, **{"model.init_from": tiny_gpt2}))
    assert f"minigpt: error: model.init_from: {tiny_gpt2} lacks tokenizer.json;" in capsys.readouterr().err


@pytest.mark.slow
def test_a_folder_that_is_no_model_is_named_as_a_folder(tmp_path: Path, corpus: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MinigptError, match=r"--ckpt_path: .*empty lacks config.json, model.safetensors"):
        load_checkpoint(tmp_path / "empty")
    # Resuming needs a .ckpt file: a folder is named as one.
    with pytest.raises(SystemExit):
        main([*tiny_fit_args(corpus), f"--ckpt_path={tmp_path / 'empty'}"])
    from minigpt.checkpoint import read_checkpoint

    with pytest.raises(MinigptError, match=r"--ckpt_path: .*empty is a folder; pass a .ckpt file"):
        read_checkpoint(tmp_path / "empty")
