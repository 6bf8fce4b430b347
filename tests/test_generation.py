from __future__ import annotations

import pytest
import torch

from minigpt.errors import MinigptError
from minigpt.generation import generate, generate_text
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizers import CharTokenizer


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))


def test_same_seed_same_tokens(model: GPT) -> None:
    prompt = torch.zeros(1, 1, dtype=torch.long)
    runs = [generate(model, prompt, 20, generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_temperature_zero_is_greedy(model: GPT) -> None:
    out = generate(model, torch.zeros(1, 1, dtype=torch.long), 5, temperature=0)
    ids = out[:, :1]
    for position in range(1, 6):
        expected = model(ids[:, -8:])[:, -1].argmax(-1, keepdim=True)
        assert out[0, position] == expected[0, 0]
        ids = torch.cat([ids, expected], dim=1)


def test_top_k_one_equals_greedy(model: GPT) -> None:
    prompt = torch.zeros(1, 1, dtype=torch.long)
    sampled = generate(model, prompt, 12, temperature=1.5, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, generate(model, prompt, 12, temperature=0))


def test_context_slides_past_block_size(model: GPT) -> None:
    out = generate(model, torch.zeros(2, 3, dtype=torch.long), 20, temperature=0)
    assert out.shape == (2, 23)


def test_generation_restores_training_mode(model: GPT) -> None:
    model.train()
    generate(model, torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training


def test_generate_text_returns_only_the_continuation(model: GPT) -> None:
    tokenizer = CharTokenizer(list("abcdefghijk"))
    text = generate_text(model, tokenizer, "abc", 7, seed=1)
    assert len(text) == 7 and set(text) <= set("abcdefghijk")
    assert text == generate_text(model, tokenizer, "abc", 7, seed=1)
    with pytest.raises(MinigptError, match="prompt is empty"):
        generate_text(model, tokenizer, "", 3)


@pytest.mark.parametrize(("kwargs", "message"), [({"temperature": -0.1}, "temperature"), ({"top_k": 0}, "top_k")])
def test_bad_sampling_values_are_refused(model: GPT, kwargs: dict, message: str) -> None:
    with pytest.raises(MinigptError, match=message):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 1, **kwargs)
