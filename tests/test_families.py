"""The open models people fine-tune, as transformers builds them: Llama (SmolLM2, TinyLlama,
Llama 3.2 with its llama3 rope scaling), Qwen2.5 and Qwen3. Each is a tiny random model with the
real one's layout (grouped-query ratio, norm epsilon, head width, biases, tied or untied head,
rope base and scaling: the real config.json with only the sizes shrunk), saved with a tokenizer
of the same build as the real one's. minigpt must load it with transformers' logits, generate
transformers' greedy tokens, fine-tune from it, and export what transformers reads back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import LINES, REPO

from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main
from minigpt.errors import MinigptError
from minigpt.huggingface.directory import read_model_config

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CORPUS = "\n".join(LINES[i % len(LINES)] for i in range(200))

# Each family's config.json as published (transformers 4 style: rope_theta and rope_scaling), with
# the sizes shrunk: hidden size, layers, heads (keeping the query/key-value ratio), intermediate
# size. vocab_size is filled in from the tokenizer.
FAMILIES: dict[str, dict[str, Any]] = {
    # HuggingFaceTB/SmolLM2-135M: 9 query heads share 3 key-value heads, tied head, rope base 1e5.
    "smollm2": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
        "attention_dropout": 0.0, "hidden_act": "silu", "hidden_size": 72, "initializer_range": 0.0417,
        "intermediate_size": 192, "is_llama_config": True, "max_position_embeddings": 8192, "mlp_bias": False,
        "num_attention_heads": 9, "num_hidden_layers": 2, "num_key_value_heads": 3, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05, "rope_interleaved": False, "rope_scaling": None, "rope_theta": 100000,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
    },
    # TinyLlama/TinyLlama-1.1B-Chat-v1.0: 32 query heads over 4, untied head, SentencePiece with <s>.
    "tinyllama": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
        "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 176,
        "max_position_embeddings": 2048, "num_attention_heads": 8, "num_hidden_layers": 2,
        "num_key_value_heads": 1, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
    },
    # meta-llama/Llama-3.2-1B: 32 over 8 heads, head_dim given, tied, rope base 5e5 scaled by llama3.
    "llama3.2": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
        "attention_dropout": 0.0, "head_dim": 8, "hidden_act": "silu", "hidden_size": 64,
        "initializer_range": 0.02, "intermediate_size": 256, "max_position_embeddings": 131072,
        "mlp_bias": False, "num_attention_heads": 8, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3",
        },
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
    },
    # Qwen/Qwen2.5-0.5B: 14 over 2 heads, biases on q, k and v only, eps 1e-6, rope base 1e6, a
    # vocabulary padded past the tokenizer's.
    "qwen2.5": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_dropout": 0.0,
        "hidden_act": "silu", "hidden_size": 56, "initializer_range": 0.02, "intermediate_size": 304,
        "max_position_embeddings": 32768, "max_window_layers": 2, "num_attention_heads": 7,
        "num_hidden_layers": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
        "use_mrope": False, "use_sliding_window": False,
    },
    # Qwen/Qwen3-0.6B: 16 over 8 heads of width 128 over a hidden size of 1024 (not 1024 / 16),
    # learned q/k RMSNorm gains, eps 1e-6.
    "qwen3": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False,
        "attention_dropout": 0.0, "head_dim": 16, "hidden_act": "silu", "hidden_size": 32,
        "initializer_range": 0.02, "intermediate_size": 96, "max_position_embeddings": 40960,
        "max_window_layers": 2, "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
    },
}  # fmt: skip
PADDED_VOCABULARY = {"qwen2.5": 64}  # rows past the tokenizer's, as Qwen's 151936 over 151665 tokens


def byte_level_tokenizer(begin_of_text: str | None) -> Any:
    """A byte-level BPE as SmolLM2's, Llama 3's and Qwen's are built; with `begin_of_text`, a
    post-processor that puts it before every text (Llama 3)."""
    bpe = tokenizers.ByteLevelBPETokenizer()
    specials = ["<|endoftext|>", *([begin_of_text] if begin_of_text else [])]
    bpe.train_from_iterator([CORPUS], vocab_size=360, min_frequency=2, special_tokens=specials)
    backend = bpe._tokenizer
    if begin_of_text:
        backend.post_processor = tokenizers.processors.TemplateProcessing(
            single=f"{begin_of_text} $A", special_tokens=[(begin_of_text, backend.token_to_id(begin_of_text))]
        )
    return backend


def sentencepiece_tokenizer() -> Any:
    """A SentencePiece-style BPE as TinyLlama's (Llama 2's): ▁ for spaces, <s> before every text."""
    sentencepiece = tokenizers.SentencePieceBPETokenizer()
    sentencepiece.train_from_iterator([CORPUS], vocab_size=360, special_tokens=["<unk>", "<s>", "</s>"])
    backend = sentencepiece._tokenizer
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    return backend


TOKENIZERS = {
    "smollm2": lambda: byte_level_tokenizer(None),
    "tinyllama": sentencepiece_tokenizer,
    "llama3.2": lambda: byte_level_tokenizer("<|begin_of_text|>"),
    "qwen2.5": lambda: byte_level_tokenizer(None),
    "qwen3": lambda: byte_level_tokenizer(None),
}
END_OF_TEXT = {"tinyllama": "</s>"}


def save_family(name: str, folder: Path) -> Path:
    """A tiny random model of the family, saved by transformers with its tokenizer, and its
    config.json as the hub has it (the format of the transformers version that wrote it)."""
    backend = TOKENIZERS[name]()
    values = dict(FAMILIES[name])
    values["vocab_size"] = backend.get_vocab_size() + PADDED_VOCABULARY.get(name, 0)
    values["eos_token_id"] = backend.token_to_id(END_OF_TEXT.get(name, "<|endoftext|>"))
    config = transformers.AutoConfig.for_model(**values)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # every weight away from its initial value, gains included
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    model.save_pretrained(folder)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=END_OF_TEXT.get(name, "<|endoftext|>")
    )
    fast.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(values, indent=2))
    return folder


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return request.param, save_family(request.param, tmp_path_factory.mktemp(request.param))


def hf_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits


def test_minigpt_reads_the_layout_as_written(family: tuple[str, Path]) -> None:
    name, folder = family
    config = read_model_config(folder, "--ckpt_path")
    values = FAMILIES[name]
    assert config.n_head == values["num_attention_heads"] and config.kv_heads == values["num_key_value_heads"]
    assert config.norm_eps == values["rms_norm_eps"] and config.tie_embeddings == values["tie_word_embeddings"]
    assert config.mlp_width == values["intermediate_size"]
    assert config.head_width == values.get("head_dim", values["hidden_size"] // values["num_attention_heads"])
    assert config.qk_norm_gains == (name == "qwen3") and config.has_qkv_bias == (name == "qwen2.5")
    assert (config.rope_scaling is not None) == (name == "llama3.2")


def test_logits_equal_transformers(family: tuple[str, Path]) -> None:
    _, folder = family
    checkpoint = load_checkpoint(folder)
    ids = torch.tensor(checkpoint.tokenizer.encode(CORPUS)[:40]).view(2, 20)
    with torch.no_grad():
        ours = checkpoint.model(ids)
    theirs = hf_logits(folder, ids)
    assert ours.shape[-1] == theirs.shape[-1]
    assert (ours - theirs).abs().max() <= 1e-4


def test_greedy_generate_equals_transformers_generate(family: tuple[str, Path], capsys: pytest.CaptureFixture) -> None:
    _, folder = family
    prompt = "ROMEO:\nBut soft"
    main(["generate", f"--ckpt_path={folder}", f"--prompt={prompt}", "--temperature=0", "--max_new_tokens=24"])
    ours = capsys.readouterr().out
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    inputs = tokenizer(prompt, return_tensors="pt")  # with the <s> a Llama tokenizer puts in front
    output = model.generate(**inputs, do_sample=False, max_new_tokens=24, pad_token_id=tokenizer.eos_token_id)
    new = output[0, inputs.input_ids.shape[1] :]
    minigpt = load_checkpoint(folder)
    assert minigpt.tokenizer.encode_prompt(prompt) == inputs.input_ids[0].tolist()
    if new[-1] == minigpt.tokenizer.eot_id:  # both stop at end-of-text, which neither prints
        new = new[:-1]
    assert ours == prompt + tokenizer.decode(new) + "\n"


@pytest.mark.slow
def test_fine_tune_then_export_loads_in_transformers_with_the_same_logits(
    family: tuple[str, Path], tmp_path: Path
) -> None:
    name, folder = family
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    main(
        [
            "fit",
            f"--config={REPO / 'configs' / 'finetune.yaml'}",
            f"--ckpt_path={folder}",
            "--data=minigpt.data.TextDataModule",
            f"--data.path={corpus}",
            "--data.block_size=32",
            "--data.batch_size=4",
            "--data.max_val_windows=4",
            "--trainer.max_steps=3",
            "--trainer.val_check_interval=3",
            "--trainer.log_every_n_steps=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--sample.tokens=4",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    tuned = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    main(["export", f"--ckpt_path={tuned}", f"--out={tmp_path / 'export'}"])
    checkpoint = load_checkpoint(tuned)
    ids = torch.tensor([checkpoint.tokenizer.encode(LINES[2])[:16]])
    with torch.no_grad():
        ours = checkpoint.model(ids)
        source = load_checkpoint(folder).model(ids)
    assert (ours - source).abs().max() > 1e-4  # it trained
    assert (hf_logits(tmp_path / "export", ids) - ours).abs().max() <= 1e-4
    # And minigpt reads its own export back as the same model.
    with torch.no_grad():
        assert (load_checkpoint(tmp_path / "export").model(ids) - ours).abs().max() <= 1e-5
    exported = json.loads((tmp_path / "export" / "config.json").read_text())
    assert exported["model_type"] == FAMILIES[name]["model_type"]


def test_a_sliding_window_or_another_rope_type_is_refused_naming_the_field(tmp_path: Path) -> None:
    folder = save_family("qwen2.5", tmp_path / "sliding")
    values = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**values, "use_sliding_window": True}))
    with pytest.raises(MinigptError, match=r"use_sliding_window True does not load"):
        load_checkpoint(folder)
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    (folder / "config.json").write_text(json.dumps({**values, "model_type": "llama", "rope_scaling": yarn}))
    with pytest.raises(MinigptError, match=r"rope_scaling.rope_type 'yarn' does not load"):
        load_checkpoint(folder)


@pytest.mark.slow
def test_a_hub_name_offline_says_how_to_supply_a_local_directory(
    corpus: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "HuggingFaceTB/SmolLM2-135M"
    lora_fit = [
        "fit",
        f"--config={REPO / 'configs' / 'finetune-lora.yaml'}",
        f"--ckpt_path={name}",
        "--data=minigpt.data.TextDataModule",
        f"--data.path={corpus}",
    ]
    for command in (["generate", f"--ckpt_path={name}", "--prompt=Hi"], lora_fit):
        with pytest.raises(SystemExit) as exit:
            main(command)
        assert exit.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("minigpt: error:")]
        assert len(errors) == 1, errors
        assert f"could not download '{name}' from the Hugging Face hub" in errors[0]
        assert f"hf download {name} config.json model.safetensors tokenizer.json" in errors[0]
        assert "pass --ckpt_path=DIR" in errors[0], errors[0]
