"""Past the context: what transformers does with an exported model (minigpt's window slides).

A GPT-2 layout (learned positions) has no position past block_size: the export tells transformers
its context, so that a call which sets no length stops there. Llama and Qwen3 layouts (rotary
positions) have nothing to run out of: transformers keeps every token in one window and turns
them by positions the model never trained at.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from minigpt.generation import generate_tokens
from minigpt.huggingface.export import export_model
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import GREEDY
from minigpt.tokenizers import CharTokenizer

transformers = pytest.importorskip("transformers")

BLOCK = 16
PROMPT = "to be, or"
LONG_PROMPT = "to be, or not to be: that is"  # longer than the context
ROTARY = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False}


def exported(out: Path, **options: object) -> tuple[GPT, CharTokenizer]:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_text("\nabcdefghijklmnopqrstuvwxyz ,.:")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, **options)
    model = GPT(config).eval()
    export_model(model, tokenizer, out)
    return model, tokenizer


def greedy(model: GPT, tokenizer: CharTokenizer, prompt: str, new_tokens: int) -> str:
    ids = torch.tensor([tokenizer.encode(prompt)])
    return tokenizer.decode(token.item() for token in generate_tokens(model, ids, new_tokens, GREEDY))


def test_gpt2_export_tells_transformers_its_context_and_a_call_without_a_length_stops_there(tmp_path: Path) -> None:
    model, tokenizer = exported(tmp_path)
    assert transformers.AutoConfig.from_pretrained(tmp_path).max_position_embeddings == BLOCK
    assert transformers.AutoTokenizer.from_pretrained(tmp_path).model_max_length == BLOCK
    assert transformers.GenerationConfig.from_pretrained(tmp_path).max_length == BLOCK
    generator = transformers.pipeline("text-generation", model=str(tmp_path), device="cpu")
    with torch.no_grad():  # without max_length the pipeline asks for 256 new tokens: an IndexError at 17
        text = generator(PROMPT, return_full_text=False)[0]["generated_text"]
    assert text == greedy(model, tokenizer, PROMPT, BLOCK - len(PROMPT))


def test_gpt2_export_past_its_context_in_transformers(tmp_path: Path) -> None:
    """What docs/generation.md says transformers does where minigpt slides its window."""
    model, tokenizer = exported(tmp_path)
    generator = transformers.pipeline("text-generation", model=str(tmp_path), device="cpu")
    with torch.no_grad():
        with pytest.raises(ValueError, match=f"Input length of input_ids is {len(LONG_PROMPT)}, but `max_length`"):
            generator(LONG_PROMPT)
        with pytest.raises(IndexError):  # asked for explicitly, positions past the table
            generator(PROMPT, max_new_tokens=BLOCK)
        # "hole" keeps the prompt's last tokens, so many that the new ones fit in the context.
        text = generator(LONG_PROMPT, max_new_tokens=4, handle_long_generation="hole", return_full_text=False)
        assert text[0]["generated_text"] == greedy(model, tokenizer, LONG_PROMPT[-(BLOCK - 4) :], 4)
        with pytest.raises(ValueError, match="exceeds the models max length"):
            generator(PROMPT, max_new_tokens=BLOCK, handle_long_generation="hole")


@pytest.mark.parametrize("qk_norm", [False, True], ids=["llama", "qwen3"])
def test_rotary_export_reads_past_its_context_as_one_longer_window(qk_norm: bool, tmp_path: Path) -> None:
    model, tokenizer = exported(tmp_path, **ROTARY, qk_norm=qk_norm)
    assert transformers.GenerationConfig.from_pretrained(tmp_path).max_length is None  # free to run on
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert theirs.config.max_position_embeddings == BLOCK
    # Rotary positions have no table: the same weights with twice the context are the same network.
    longer = GPT(replace(model.config, block_size=2 * BLOCK)).eval()
    longer.load_state_dict(model.state_dict())
    ids = torch.randint(0, tokenizer.vocab_size, (2, 2 * BLOCK), generator=torch.Generator().manual_seed(1))
    new_tokens = 2 * BLOCK - len(PROMPT)
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, longer(ids), atol=1e-4, rtol=0)
        generated = theirs.generate(torch.tensor([tokenizer.encode(PROMPT)]), max_new_tokens=new_tokens)
    assert tokenizer.decode(generated[0].tolist()) == PROMPT + greedy(longer, tokenizer, PROMPT, new_tokens)
