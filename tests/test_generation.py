from __future__ import annotations

import pytest
import torch

from minigpt.errors import MinigptError
from minigpt.generation import (
    StopScanner,
    TextGenerator,
    generate_tokens,
    next_token_probabilities,
    penalize_repetition,
)
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import Sampling
from minigpt.tokenizers import CharTokenizer


def generate(
    model: torch.nn.Module,
    ids: torch.Tensor,
    max_new_tokens: int,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    window_shift: int | None = None,
    **sampling: float,
) -> torch.Tensor:
    """`ids` extended by `max_new_tokens` tokens, as the core generator yields them."""
    settings = Sampling(**{"temperature": 1.0, "top_k": None, **sampling})
    steps = generate_tokens(
        model, ids, max_new_tokens, settings, generator=generator, use_cache=use_cache, window_shift=window_shift
    )
    return torch.cat([ids, *(step[:, None] for step in steps)], dim=1)


def generate_text(
    model: torch.nn.Module, tokenizer: CharTokenizer, prompt: str, max_new_tokens: int, **kwargs: object
) -> str:
    stop, seed = kwargs.pop("stop", ()), kwargs.pop("seed", None)
    sampling = Sampling(**{"temperature": 1.0, "top_k": None, **kwargs})
    return TextGenerator(model, tokenizer).generate(prompt, max_new_tokens, sampling, stop=stop, seed=seed)[0]


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


# --- KV cache ---------------------------------------------------------------------------------


def test_cache_gives_the_logits_of_a_full_forward() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 13, (2, 12))
    cache = model.new_cache(2)
    # A 5-token prefill, one token, then a 3-token chunk (the masked path), then the rest.
    pieces = [model(ids[:, a:b], cache) for a, b in ((0, 5), (5, 6), (6, 9), (9, 12))]
    torch.testing.assert_close(torch.cat(pieces, dim=1), model(ids), atol=1e-5, rtol=1e-5)
    assert cache.length == 12


def test_cache_refuses_to_overflow_the_block() -> None:
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
    cache = model.new_cache(1)
    model(torch.zeros(1, 3, dtype=torch.long), cache)
    with pytest.raises(MinigptError, match="longer than the model's block_size 4"):
        model(torch.zeros(1, 2, dtype=torch.long), cache)


@pytest.mark.parametrize("window_shift", [None, 1, 3])
def test_greedy_with_cache_equals_greedy_without(window_shift: int | None) -> None:
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=29, block_size=12, n_layer=2, n_head=2, n_embd=24))
    prompt = torch.randint(0, 29, (2, 5))
    # 40 new tokens on a 12-token context: the window slides several times.
    runs = [
        generate(model, prompt, 40, temperature=0, use_cache=use_cache, window_shift=window_shift)
        for use_cache in (True, False)
    ]
    assert torch.equal(runs[0], runs[1])


def test_window_shift_one_is_the_last_block_size_tokens_rule(model: GPT) -> None:
    out = generate(model, torch.zeros(1, 1, dtype=torch.long), 20, temperature=0, window_shift=1)
    for position in range(1, 21):
        context = out[:, max(0, position - 8) : position]
        assert out[0, position] == model(context)[0, -1].argmax()


def test_bigram_model_generates_without_a_cache() -> None:
    from minigpt.bigram import BigramConfig, BigramLM

    model = BigramLM(BigramConfig(vocab_size=7))
    out = generate(model, torch.zeros(1, 3, dtype=torch.long), 10, temperature=0)
    assert out.shape == (1, 13)
    for position in range(3, 13):
        assert out[0, position] == model.table.weight[out[0, position - 1]].argmax()


# --- sampling controls ------------------------------------------------------------------------


def test_top_k_keeps_exactly_the_k_most_likely_tokens() -> None:
    logits = torch.tensor([[1.0, 4.0, 2.0, 3.0, 0.0]])
    probs = next_token_probabilities(logits, torch.zeros(1, 1, dtype=torch.long), Sampling(temperature=1.0, top_k=2))
    expected = torch.softmax(torch.tensor([4.0, 3.0]), dim=0)
    torch.testing.assert_close(probs[0], torch.tensor([0.0, expected[0], 0.0, expected[1], 0.0]))


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [
        (0.5, [1.0, 0.0, 0.0, 0.0]),  # the top token alone reaches 0.5
        (0.7, [0.625, 0.375, 0.0, 0.0]),  # 0.5 + 0.3 reaches 0.7, renormalised
        (0.9, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]),
        (1.0, [0.5, 0.3, 0.15, 0.05]),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p: float, expected: list[float]) -> None:
    # Shuffled order: the filter must follow probability, not position.
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])
    order = [1, 3, 0, 2]
    sampling = Sampling(temperature=1.0, top_k=None, top_p=top_p)
    out = next_token_probabilities(probs.log()[None], torch.zeros(1, 1, dtype=torch.long), sampling)
    torch.testing.assert_close(out[0, order], torch.tensor(expected))


def test_repetition_penalty_lowers_the_logits_of_seen_tokens() -> None:
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5]])
    history = torch.tensor([[0, 1, 0]])
    out = penalize_repetition(logits, history, 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 3.0, 0.5]]))
    probs = next_token_probabilities(logits, history, Sampling(temperature=1.0, top_k=None, repetition_penalty=2.0))
    assert (probs[0, :2] < torch.softmax(logits, dim=-1)[0, :2]).all()
    assert (probs[0, 2:] > torch.softmax(logits, dim=-1)[0, 2:]).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ],
)
def test_more_bad_sampling_values_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(MinigptError, match=message):
        Sampling(**kwargs)


# --- text: streaming, stop sequences, end-of-text, prompts -------------------------------------


class CountingModel(torch.nn.Module):
    """Always predicts (last token + 1) mod vocab: a model whose output is known in advance."""

    def __init__(self, vocab_size: int, block_size: int = 64) -> None:
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=1, n_embd=4)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((idx + 1) % self.config.vocab_size, self.config.vocab_size).float() * 10


LETTERS = CharTokenizer(list("abcdefghij"))


def test_stop_sequence_ends_the_output_before_it() -> None:
    model = CountingModel(10)
    assert generate_text(model, LETTERS, "a", 12, temperature=0) == "bcdefghijabc"
    assert generate_text(model, LETTERS, "a", 12, temperature=0, stop=["fg"]) == "bcde"
    assert generate_text(model, LETTERS, "a", 12, temperature=0, stop=["zz", "jab", "d"]) == "bc"
    # A stop that never completes holds nothing back at the end.
    assert generate_text(model, LETTERS, "a", 5, temperature=0, stop=["fx"]) == "bcdef"


def test_end_of_text_token_ends_the_output() -> None:
    tokenizer = CharTokenizer(["\x03", *"abc"])
    assert generate_text(CountingModel(4), tokenizer, "a", 10, temperature=0) == "bc"


def test_streaming_yields_pieces_as_they_come(model: GPT) -> None:
    tokenizer = CharTokenizer(list("abcdefghijk"))
    pieces = list(TextGenerator(model, tokenizer).stream("abc", 15, Sampling(temperature=0.9), stop=["jj"], seed=3))
    assert len(pieces) > 1
    assert "".join(pieces) == generate_text(
        model, tokenizer, "abc", 15, temperature=0.9, top_k=200, seed=3, stop=["jj"]
    )


def test_num_samples_are_seeded_and_distinct(model: GPT) -> None:
    tokenizer = CharTokenizer(list("abcdefghijk"))
    generator, sampling = TextGenerator(model, tokenizer), Sampling(temperature=1.5)
    first = generator.generate("ab", 30, sampling, num_samples=3, seed=4)
    assert first == generator.generate("ab", 30, sampling, num_samples=3, seed=4)
    assert len(set(first)) == 3 and all(len(text) == 30 for text in first)


def test_prompt_longer_than_the_context_keeps_its_end_with_a_warning() -> None:
    model = CountingModel(10, block_size=4)
    with pytest.warns(UserWarning, match="the prompt has 7 tokens, more than the model's context of 4"):
        assert generate_text(model, LETTERS, "abcdefg", 3, temperature=0) == "hij"


def test_stop_scanner_holds_back_a_possible_stop_start() -> None:
    scanner = StopScanner(["###"])
    assert scanner.update("answer #") == "answer "
    assert scanner.update("answer ##") == ""
    assert scanner.update("answer ##!") == "##!"
    assert scanner.update("answer ##! ###x") == " "
    assert scanner.stopped


@pytest.mark.parametrize("options", [{}, {"position": "rope"}])
def test_left_padded_rows_get_the_logits_they_get_alone(options: dict) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16, **options)).eval()
    rows = [torch.randint(0, 13, (n,)) for n in (3, 7, 5)]
    pads = torch.tensor([7 - len(row) for row in rows])
    batch = torch.stack([torch.cat([torch.zeros(7 - len(row), dtype=torch.long), row]) for row in rows])
    with torch.no_grad():
        together = model(batch, pads=pads)
        # And through the cache: a prefill, then one token at a time.
        cache = model.new_cache(3)
        cached = torch.cat([model(batch[:, :4], cache, pads=pads), model(batch[:, 4:], cache, pads=pads)], dim=1)
        for index, row in enumerate(rows):
            alone = model(row[None])[0]
            torch.testing.assert_close(together[index, -len(row) :], alone, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(cached[index, -len(row) :], alone, atol=1e-5, rtol=1e-5)


def test_a_batch_of_prompts_completes_as_each_prompt_alone() -> None:
    torch.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16))
    tokenizer = CharTokenizer(list("abcdefghijk"))
    generator = TextGenerator(model, tokenizer)
    prompts = ["abc", "a", "kjihgfe", "bb"]
    for sampling, seeds in ((Sampling(temperature=0), None), (Sampling(temperature=1.0), [5, 6, 7, 8])):
        batched = generator.complete(prompts, 20, sampling, stop=["kk"], seeds=seeds)
        for index, prompt in enumerate(prompts):
            seed = None if seeds is None else seeds[index]
            (alone,) = generator.complete([prompt], 20, sampling, stop=["kk"], seeds=None if seed is None else [seed])
            assert batched[index] == alone
            assert alone.text == generator.generate(prompt, 20, sampling, stop=["kk"], seed=seed)[0]
        assert all(completion.tokens <= 20 for completion in batched)
