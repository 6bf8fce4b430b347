"""Exported models as transformers sees them: its tokenizer gives our ids, its generation our text."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import LINES, SHARED_DATA, tiny_fit_args

from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main
from minigpt.errors import MinigptError
from minigpt.huggingface.export import EXPORTED_FILES, export_model
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizers import END_OF_TEXT_CHAR, CharTokenizer, PretrainedTokenizer, Tokenizer, TokenizerSpec

transformers = pytest.importorskip("transformers")

SHAKESPEARE = SHARED_DATA / "tinyshakespeare" / "input.txt"
TEXT = SHAKESPEARE.read_text(encoding="utf-8")[-20_000:] if SHAKESPEARE.is_file() else "\n".join(LINES * 40)
# Runs of spaces, tabs, blank lines, CRLF, accents, emoji, special tokens spelled out as text,
# and more text than any context holds.
TORTURE = (
    "Hello  world\n\nFirst Citizen:\tBefore we proceed   any further,\r\nhear me speak.\n\n\n"
    "Café naïve — “quoted” 🙂🎭 ok\t\t  \n   indented\r\n" + "ROMEO: " * 60 + "\u00a0end<|endoftext|> <|pad|></s>"
)
# Characters that neither Tiny Shakespeare nor TORTURE has.
UNSEEN = "Straße 日本"


def gpt2_style_tokenizer() -> PretrainedTokenizer:
    """A published-style byte-level BPE tokenizer.json, as GPT-2's is built."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([TEXT, TORTURE], vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"])
    return PretrainedTokenizer.from_dict({"kind": "pretrained", "backend": json.loads(bpe._tokenizer.to_str())})


def llama_style_tokenizer() -> PretrainedTokenizer:
    """A SentencePiece-style tokenizer.json as Llama's is built: spaces as ▁, an unknown token,
    a post-processor that puts <s> before every text, and a length it cuts texts to."""
    from tokenizers import SentencePieceBPETokenizer, processors

    sentencepiece = SentencePieceBPETokenizer()
    sentencepiece.train_from_iterator([TEXT], vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"])
    backend = sentencepiece._tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    backend.enable_truncation(max_length=64)
    return PretrainedTokenizer.from_dict({"kind": "pretrained", "backend": json.loads(backend.to_str())})


def tokenizer_of_kind(kind: str) -> Tokenizer:
    if kind.startswith("char"):
        alphabet = TEXT + TORTURE + (END_OF_TEXT_CHAR if kind == "char-eot" else "")
        return CharTokenizer.from_text(alphabet, special_tokens=kind == "char-special")
    if kind == "pretrained":
        return gpt2_style_tokenizer()
    if kind == "pretrained-llama":
        return llama_style_tokenizer()
    name, _, pattern = kind.partition(":")
    return TokenizerSpec(kind=name, vocab_size=400, pattern=pattern or "gpt4", min_frequency=1).train([TEXT])


KINDS = [
    "char", "char-special", "char-eot", "bpe", "regex-bpe:gpt2", "regex-bpe:gpt4", "pretrained", "pretrained-llama"
]  # fmt: skip
CHAR_KINDS = [kind for kind in KINDS if kind.startswith("char")]


@pytest.mark.parametrize("kind", KINDS)
def test_auto_tokenizer_gives_minigpts_ids(kind: str, tmp_path: Path) -> None:
    tokenizer = tokenizer_of_kind(kind)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=8))
    export_model(model, tokenizer, tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf.is_fast  # built from our tokenizer.json, not a GPT-2 tokenizer with its own rules
    for text in (TEXT, TORTURE, UNSEEN if kind == "pretrained-llama" else ""):
        ids = tokenizer.encode(text)
        # Nothing cut, special tokens spelled as minigpt does; a prompt gets the <s> a Llama
        # tokenizer puts in front in both, a corpus text in neither.
        assert hf.encode(text) == hf(text).input_ids == tokenizer.encode_prompt(text)
        assert hf(text, add_special_tokens=False).input_ids == ids
        if kind == "pretrained-llama":
            assert tokenizer.encode_prompt(text) == [1, *ids]  # its <s>
        assert hf.decode(ids) == tokenizer.decode(ids)
        if kind != "pretrained-llama":  # its unknown token stands for any character it lacks
            assert tokenizer.decode(ids) == text
    if tokenizer.eot_id is not None:
        assert hf.eos_token_id == tokenizer.eot_id
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert config[key] is None or 0 <= config[key] < tokenizer.vocab_size, key


@pytest.mark.parametrize("kind", CHAR_KINDS)
def test_auto_tokenizer_refuses_characters_minigpt_refuses(kind: str, tmp_path: Path) -> None:
    """Never another text: a character outside the vocabulary is refused, not read as another one."""
    tokenizer = tokenizer_of_kind(kind)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=8))
    export_model(model, tokenizer, tmp_path)
    with pytest.raises(MinigptError, match="outside the tokenizer's vocabulary: 'ß日本'"):
        tokenizer.encode(UNSEEN)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    refusal = r"WordLevel error: Missing \[UNK\] token from the vocabulary"
    for encode in (hf.encode, hf, lambda text: hf([TEXT[:50], text]), hf.tokenize):
        with pytest.raises(Exception, match=refusal):
            encode(UNSEEN)
    with pytest.raises(Exception, match=refusal):
        transformers.pipeline("text-generation", model=str(tmp_path), device="cpu")(UNSEEN, max_new_tokens=1)
    # minigpt reads the exported directory back as the character tokenizer it was, refusing the
    # same text and naming the characters.
    loaded = load_checkpoint(tmp_path).tokenizer
    assert loaded.to_json() == tokenizer.to_json()
    with pytest.raises(MinigptError, match="outside the tokenizer's vocabulary: 'ß日本'"):
        loaded.encode(UNSEEN)


def test_exported_files_are_all_there_and_readable_by_everyone(tmp_path: Path) -> None:
    tokenizer = tokenizer_of_kind("regex-bpe:gpt4")
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=8))
    export_model(model, tokenizer, tmp_path)
    for name in EXPORTED_FILES:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    generation = transformers.GenerationConfig.from_pretrained(tmp_path)
    assert generation.eos_token_id == tokenizer.eot_id == 0 and generation.pad_token_id == tokenizer.pad_id == 1


@pytest.fixture(scope="module")
def bpe_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bpe")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    tokenizer = {"data.tokenizer.kind": "regex-bpe", "data.tokenizer.vocab_size": 300, "data.tokenizer.pattern": "gpt2"}
    main(tiny_fit_args(corpus, max_steps=40, **tokenizer, **{"trainer.default_root_dir": root}))
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize("source", ["char", "bpe"])
def test_pipeline_greedy_text_equals_minigpt_generate(
    source: str, pretrained: Path, bpe_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = pretrained if source == "char" else bpe_checkpoint
    main(["export", f"--ckpt_path={checkpoint}", f"--out={tmp_path / 'hf'}"])
    generator = transformers.pipeline("text-generation", model=str(tmp_path / "hf"), device="cpu")
    block_size = load_checkpoint(checkpoint).model.config.block_size
    # Double spaces and blank lines: where GPT-2's pre-tokenizer used to re-tokenize our text.
    for prompt in ("ROMEO:\nBut  soft", "JULIET:\n\nO Romeo, ", "NURSE:  Good"):
        new_tokens = block_size - len(load_checkpoint(checkpoint).tokenizer.encode(prompt))
        ours = subprocess.run(
            [sys.executable, "-m", "minigpt", "generate", f"--ckpt_path={checkpoint}", f"--prompt={prompt}",
             "--temperature=0", f"--max_new_tokens={new_tokens}"],
            capture_output=True, text=True, check=True,
        ).stdout.removesuffix("\n")  # fmt: skip
        with torch.no_grad():
            theirs = generator(prompt, max_new_tokens=new_tokens, do_sample=False, return_full_text=False)
        assert ours == prompt + theirs[0]["generated_text"], prompt


@pytest.mark.parametrize(
    "options",
    [
        {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "tie_embeddings": False, "bias": False},
        {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "rope_base": 500.0},
        {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "qk_norm": True, "bias": False},
        {"mlp_ratio": 2.0, "bias": False},
    ],
    ids=["llama-untied", "llama-tied-with-biases", "qwen3-qk-norm", "gpt2-narrow-mlp"],
)
def test_every_exportable_layout_loads_in_transformers_with_the_same_logits(options: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_text(TEXT)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32, **options))
    with torch.no_grad():  # biases and gains start at 0 and 1: move them, so that a lost one shows
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    export_model(model.eval(), tokenizer, tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    if options.get("position") != "rope":
        expected = "GPT2LMHeadModel"
    else:
        expected = "Qwen3ForCausalLM" if options.get("qk_norm") else "LlamaForCausalLM"
    assert type(theirs).__name__ == expected
    ids = torch.randint(0, tokenizer.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, model(ids), atol=1e-4, rtol=0)


def test_a_model_no_hugging_face_architecture_has_is_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    modern = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu"}
    for options, named in (
        ({**modern, "logit_softcap": 15.0}, "model.gpt.logit_softcap: 15.0"),
        ({**modern, "value_embeddings": True}, "model.gpt.value_embeddings: True"),
        ({**modern, "qk_norm": True, "mlp": "relu2"}, "model.gpt.mlp: relu2"),
        ({"mlp": "relu2"}, "model.gpt.mlp: relu2"),
    ):
        model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8, **options))
        with pytest.raises(MinigptError, match=named) as error:
            export_model(model, CharTokenizer(list("abcdefghij")), tmp_path / "out")
        assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_a_llama_directory_comes_back_as_the_same_gpt(tmp_path: Path) -> None:
    """The round trip: exported as Llama, loaded back by minigpt with the same logits and ids."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_text(TEXT + TORTURE)
    modern = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "tie_embeddings": False, "bias": False}
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32, **modern))
    export_model(model.eval(), tokenizer, tmp_path / "llama")
    back = load_checkpoint(tmp_path / "llama")
    # The same network: mlp_ratio may be spelled otherwise for the same SwiGLU width.
    assert (
        replace(back.model.config, mlp_ratio=4.0) == model.config
        and back.model.config.mlp_width == model.config.mlp_width
    )
    ids = torch.randint(0, tokenizer.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(back.model(ids), model(ids), atol=1e-5, rtol=0)
    assert back.tokenizer.encode(TORTURE) == tokenizer.encode(TORTURE)
