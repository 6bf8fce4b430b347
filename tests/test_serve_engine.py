"""The batching engine without HTTP: rows that join a running batch, slide past the context and
leave get exactly what `TextGenerator` (the code behind `minigpt generate`) gives each alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from minigpt.generation import TextGenerator
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import Sampling
from minigpt.serving.batch import BatchCache
from minigpt.serving.engine import Choice, Engine, Event, Job, QueueFull
from minigpt.tokenizers import END_OF_TEXT_CHAR, CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz ,.\n" + END_OF_TEXT_CHAR
PROMPTS = ["hello", "a", "the quick brown fox jumps over", "xyz", "lorem ipsum", "q", "ab", "zzzzzz"]
SAMPLINGS = [
    Sampling(temperature=0),
    Sampling(temperature=1.0, top_k=None),
    Sampling(temperature=0.9, top_k=12, top_p=0.8, repetition_penalty=1.3),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # A second torch thread buys a model this small nothing, and on a busy machine the two spin
    # against each other (tens of times slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer.from_text(ALPHABET)


@pytest.fixture(scope="module", params=["learned", "rope"])
def model(request: pytest.FixtureRequest, tokenizer: CharTokenizer) -> GPT:
    torch.manual_seed(0)
    options = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu"} if request.param == "rope" else {}
    # A 16-token context: the answers below slide their window several times.
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32, **options)
    return GPT(config).eval()


class Collected:
    """A job's events, gathered as the engine sends them."""

    def __init__(self, choices: int) -> None:
        self.texts = [""] * choices
        self.finish: list[str | None] = [None] * choices
        self.tokens = [0] * choices
        self.done = threading.Event()

    def __call__(self, events: list[Event]) -> None:
        for event in events:
            self.texts[event.choice] += event.text
            self.tokens[event.choice] = event.tokens
            if event.finish or event.error:
                self.finish[event.choice] = event.finish or event.error
        if all(self.finish):
            self.done.set()


def submit(engine: Engine, tokenizer: CharTokenizer, prompt: str, max_tokens: int, sampling: Sampling, seed: int,
           stop: tuple[str, ...] = ()) -> Collected:  # fmt: skip
    collected = Collected(1)
    engine.submit(Job([Choice(tokenizer.encode(prompt)[-16:], sampling, seed, max_tokens, stop)], collected))
    return collected


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=["greedy", "sampled", "top-p-and-penalty"])
def test_rows_that_join_and_slide_get_what_they_get_alone(
    model: GPT, tokenizer: CharTokenizer, sampling: Sampling
) -> None:
    engine = Engine(model, tokenizer, max_rows=5, max_queue=100)
    engine.start()
    try:
        # Submitted while others run: more prompts than rows, so some wait and join later.
        jobs = [submit(engine, tokenizer, prompt, 30 + 3 * i, sampling, 100 + i) for i, prompt in enumerate(PROMPTS)]
        for job in jobs:
            assert job.done.wait(60)
    finally:
        engine.stop()
    alone = TextGenerator(model, tokenizer)
    with pytest.warns(UserWarning, match="more than the model's context"):  # the long prompt, cut alike
        expected = [alone.complete([p], 30 + 3 * i, sampling, seeds=[100 + i])[0] for i, p in enumerate(PROMPTS)]
    assert [job.texts[0] for job in jobs] == [completion.text for completion in expected]
    assert engine.tokens_generated / engine.forward_passes > 1.5  # rows shared forward passes


def test_end_of_text_and_stop_sequences_end_a_row_and_max_tokens_ends_it_with_length(
    model: GPT, tokenizer: CharTokenizer
) -> None:
    engine = Engine(model, tokenizer, max_rows=4, max_queue=10)
    engine.start()
    try:
        greedy = Sampling(temperature=0)
        free = submit(engine, tokenizer, "hello", 40, greedy, 0)
        assert free.done.wait(60)
        text = free.texts[0]
        stop = text[10:12]
        stopped = submit(engine, tokenizer, "hello", 40, greedy, 0, stop=(stop,))
        assert stopped.done.wait(60)
    finally:
        engine.stop()
    assert free.finish == ["length"] and free.tokens == [40] and len(text) == 40
    assert stopped.finish == ["stop"] and stopped.texts[0] == text[: text.index(stop)]
    assert stopped.tokens[0] == text.index(stop) + len(stop)


def test_a_cancelled_job_frees_its_rows_before_the_next_step(model: GPT, tokenizer: CharTokenizer) -> None:
    engine = Engine(model, tokenizer, max_rows=1, max_queue=1)
    engine.start()
    try:
        first = threading.Event()
        job = Job([Choice([1, 2, 3], Sampling(temperature=0), 0, 10**9)], lambda events: first.set())
        engine.submit(job)
        assert first.wait(60)
        waiting = submit(engine, tokenizer, "ab", 5, Sampling(temperature=0), 0)
        with pytest.raises(QueueFull):
            submit(engine, tokenizer, "ab", 5, Sampling(temperature=0), 0)
        job.cancel()
        assert waiting.done.wait(60) and waiting.finish == ["length"]
    finally:
        engine.stop()
    assert engine.active_rows == 0 and engine.queued_jobs == 0


def test_a_failing_step_fails_its_jobs_and_the_engine_goes_on(tokenizer: CharTokenizer) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8)).eval()
    engine = Engine(model, tokenizer, max_rows=2, max_queue=10)
    engine.start()
    try:
        broken = Collected(1)
        # An id past the vocabulary makes the embedding lookup fail inside the worker thread.
        engine.submit(Job([Choice([tokenizer.vocab_size + 5], Sampling(temperature=0), 0, 5)], broken))
        assert broken.done.wait(60)
        healthy = submit(engine, tokenizer, "ab", 5, Sampling(temperature=0), 0)
        assert healthy.done.wait(60)
    finally:
        engine.stop()
    assert broken.finish[0].startswith("generation failed: IndexError")
    assert healthy.finish == ["length"] and len(healthy.texts[0]) == 5


def test_moving_rows_in_the_batch_cache_keeps_their_logits(model: GPT) -> None:
    """Rows of several lengths copied into one cache, moved right, dropped and moved left give
    each remaining row the logits it gets alone."""
    torch.manual_seed(1)
    rows = [torch.randint(0, model.config.vocab_size, (length,)) for length in (5, 9, 3)]
    cache = BatchCache(model, capacity=3)
    moved_left = False
    with torch.inference_mode():
        for row in rows:  # a row longer than the batch moves it right
            own = model.new_cache(1)
            model(row[None, :-1], own)
            cache.add(own)
        for step in range(20):
            if step == 3:  # the longest row leaves; the last takes its place
                cache.remove(1)
                rows = [rows[0], rows[2]]
            if any(cache.window(i) + 1 > model.config.block_size for i in range(cache.rows)):
                break
            moved_left |= cache.length >= model.config.block_size
            cache.make_room()
            kv, pads = cache.step_inputs()
            batched = model(torch.stack([row[-1:] for row in rows]), kv, pads=pads)[:, -1]
            cache.advance()
            for index, row in enumerate(rows):
                torch.testing.assert_close(batched[index], model(row[None])[0, -1], rtol=1e-4, atol=1e-5)
            rows = [torch.cat([row, batched[i].argmax()[None]]) for i, row in enumerate(rows)]
    assert moved_left
