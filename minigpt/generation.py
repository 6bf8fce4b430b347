"""Sampling from any model that maps ids (B, T) to logits (B, T, vocab) and has config.block_size.

Models with a `new_cache(batch_size)` method (GPT) are fed one new token per step through a KV
cache; others (the bigram baseline) are re-run on the context each step. Both see the same
context, so they produce the same tokens.

The context window: each token is predicted from the tokens since the window's start. When the
window would exceed block_size, its start jumps forward so that it keeps its last
`block_size - window_shift` tokens, and the KV cache is rebuilt from those in one forward pass
(learned position embeddings tie every cached key to its absolute position, so a cache cannot
slide). `window_shift=1` re-runs the model on the last block_size tokens at every step past
block_size (nanoGPT's rule, and the cost of generating without a cache); the default,
a quarter of block_size, rebuilds once every block_size/4 tokens and never sees less than 3/4 of
a block of context.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from minigpt.errors import MinigptError
from minigpt.tokenizers import Tokenizer


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked from the logits, applied in this order.

    repetition_penalty: > 1 makes tokens already in the context less likely (CTRL's rule: a
        positive logit is divided by it, a negative one multiplied); 1 turns it off.
    temperature: divides the logits; 0 picks the most likely token (greedy).
    top_k: sample among the k most likely tokens only.
    top_p: sample among the fewest most likely tokens whose probabilities add up to top_p.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise MinigptError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise MinigptError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise MinigptError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise MinigptError(f"repetition_penalty must be positive (1 turns it off), got {self.repetition_penalty}")


def penalize_repetition(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    """Logits (B, V) with every token that occurs in `history` (B, T) made less likely."""
    if penalty == 1.0:
        return logits
    seen = logits.gather(1, history)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, history, seen)


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches p (at least one)."""
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # A token is dropped when the tokens ranked above it already reach p.
    drop_sorted = (probs.cumsum(dim=-1) - probs) >= p
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token_probabilities(logits: torch.Tensor, history: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The distribution (B, V) the next token is drawn from, given last-position logits (B, V)."""
    logits = penalize_repetition(logits.float(), history, sampling.repetition_penalty)
    if sampling.temperature == 0:
        return torch.zeros_like(logits).scatter_(1, logits.argmax(dim=-1, keepdim=True), 1.0)
    logits = logits / sampling.temperature
    if sampling.top_k is not None:
        logits = keep_top_k(logits, sampling.top_k)
    if sampling.top_p is not None and sampling.top_p < 1.0:
        logits = keep_top_p(logits, sampling.top_p)
    return torch.softmax(logits, dim=-1)


@torch.no_grad()
def generate_ids(
    model: nn.Module,
    ids: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    window_shift: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of each row of `ids` (B, T), one (B,) tensor per step."""
    sampling = sampling or Sampling()
    block_size = model.config.block_size
    keep = max(1, block_size - (window_shift or max(1, block_size // 4)))
    cache = model.new_cache(ids.size(0)) if use_cache and hasattr(model, "new_cache") else None
    start = max(0, ids.size(1) - block_size)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            if ids.size(1) - start > block_size:
                start = ids.size(1) - keep
                if cache is not None:
                    cache.reset()
            # A cache is fed only the tokens it has not seen yet.
            fed = ids[:, start:] if cache is None else ids[:, start + cache.length :]
            logits = model(fed) if cache is None else model(fed, cache)
            probs = next_token_probabilities(logits[:, -1, :], ids, sampling)
            if sampling.temperature == 0:
                next_id = probs.argmax(dim=-1, keepdim=True)
            else:
                next_id = torch.multinomial(probs, num_samples=1, generator=generator)
            ids = torch.cat([ids, next_id], dim=1)
            yield next_id[:, 0]
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    window_shift: int | None = None,
) -> torch.Tensor:
    """`ids` (B, T) extended by `max_new_tokens` tokens (B, T + max_new_tokens)."""
    sampling = Sampling(temperature, top_k, top_p, repetition_penalty)
    steps = generate_ids(model, ids, max_new_tokens, sampling, generator, use_cache, window_shift)
    return torch.cat([ids, *(step[:, None] for step in steps)], dim=1)


def encode_prompt(tokenizer: Tokenizer, prompt: str, block_size: int) -> list[int]:
    """The prompt's ids; one longer than the context keeps its last block_size, with a warning."""
    if not prompt:
        raise MinigptError("the prompt is empty; give at least one character")
    ids = tokenizer.encode(prompt)
    if len(ids) > block_size:
        warnings.warn(
            f"the prompt has {len(ids)} tokens, more than the model's context of {block_size}; "
            f"only its last {block_size} tokens are used",
            stacklevel=3,
        )
        ids = ids[-block_size:]
    return ids


class StopScanner:
    """Cuts a growing text at the first stop sequence, holding back what might start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.shown = 0
        self.stopped = False

    def _held_back(self, text: str) -> int:
        # A byte-level tokenizer decodes half a character as U+FFFD until its other bytes arrive.
        held = len(text) - len(text.rstrip("\ufffd"))
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    held = max(held, size)
                    break
        return held

    def update(self, text: str, final: bool = False) -> str:
        """Given all text decoded so far, the new part that is safe to show."""
        cuts = [index for stop in self.stops if (index := text.find(stop)) != -1]
        if cuts:
            self.stopped = True
            end = min(cuts)
        else:
            end = len(text) if final else len(text) - self._held_back(text)
        end = max(end, self.shown)
        piece, self.shown = text[self.shown : end], end
        return piece


def stream_samples(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    sampling: Sampling | None = None,
    stop: Sequence[str] = (),
    num_samples: int = 1,
    seed: int | None = None,
    use_cache: bool = True,
) -> Iterator[list[str]]:
    """Continue `prompt` `num_samples` times in one batch, yielding each sample's new text per step.

    A sample ends at the tokenizer's end-of-text token (not shown), at the first stop sequence
    (not shown), or after max_new_tokens tokens. The same seed gives the same samples. Bad
    settings and prompts are reported here, before the first step.
    """
    if max_new_tokens < 0:
        raise MinigptError(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
    if num_samples < 1:
        raise MinigptError(f"num_samples must be at least 1, got {num_samples}")
    device = next(model.parameters()).device
    prompt_ids = encode_prompt(tokenizer, prompt, model.config.block_size)
    ids = torch.tensor([prompt_ids] * num_samples, dtype=torch.long, device=device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    steps = generate_ids(model, ids, max_new_tokens, sampling, generator, use_cache)
    return _text_pieces(steps, tokenizer, [StopScanner(stop) for _ in range(num_samples)])


def _text_pieces(
    steps: Iterator[torch.Tensor], tokenizer: Tokenizer, scanners: list[StopScanner]
) -> Iterator[list[str]]:
    eot = tokenizer.eot_id
    new_ids: list[list[int]] = [[] for _ in scanners]
    for step in steps:
        pieces = []
        for row, token in enumerate(step.tolist()):
            scanner = scanners[row]
            if scanner.stopped:
                pieces.append("")
                continue
            if token == eot:
                pieces.append(scanner.update(tokenizer.decode(new_ids[row]), final=True))
                scanner.stopped = True
                continue
            new_ids[row].append(token)
            pieces.append(scanner.update(tokenizer.decode(new_ids[row])))
        yield pieces
        if all(scanner.stopped for scanner in scanners):
            return
    # Out of tokens: what was held back as a possible stop sequence's start is text after all.
    yield [
        "" if scanner.stopped else scanner.update(tokenizer.decode(row_ids), final=True)
        for scanner, row_ids in zip(scanners, new_ids, strict=True)
    ]


def stream_text(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    sampling: Sampling | None = None,
    stop: Sequence[str] = (),
    seed: int | None = None,
    use_cache: bool = True,
) -> Iterator[str]:
    """The prompt's continuation as text pieces, as soon as they are produced."""
    samples = stream_samples(model, tokenizer, prompt, max_new_tokens, sampling, stop, 1, seed, use_cache)
    return (pieces[0] for pieces in samples if pieces[0])


def generate_texts(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    sampling: Sampling | None = None,
    stop: Sequence[str] = (),
    num_samples: int = 1,
    seed: int | None = None,
    use_cache: bool = True,
) -> list[str]:
    """`num_samples` continuations of `prompt` (without the prompt)."""
    texts = [""] * num_samples
    for pieces in stream_samples(
        model, tokenizer, prompt, max_new_tokens, sampling, stop, num_samples, seed, use_cache
    ):
        texts = [text + piece for text, piece in zip(texts, pieces, strict=True)]
    return texts


def generate_text(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    stop: Sequence[str] = (),
) -> str:
    """The prompt's continuation (without the prompt) as text; the same seed gives the same text."""
    sampling = Sampling(temperature, top_k, top_p, repetition_penalty)
    return generate_texts(model, tokenizer, prompt, max_new_tokens, sampling, stop, seed=seed)[0]
