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
from typing import Protocol, cast

import torch
from torch import nn

from minigpt.errors import MinigptError
from minigpt.model import KVCache
from minigpt.prompts import PromptStyle, style_by_name
from minigpt.sampling import DEFAULT_SAMPLING, Sampling
from minigpt.tokenizers import Tokenizer


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


def draw(
    probs: torch.Tensor, sampling: Sampling, generator: torch.Generator | Sequence[torch.Generator] | None
) -> torch.Tensor:
    """The next token of each row (B, 1): the most likely one, or drawn with the row's generator."""
    if sampling.temperature == 0:
        return probs.argmax(dim=-1, keepdim=True)
    if isinstance(generator, Sequence):
        rows = zip(probs.split(1), generator, strict=True)
        return torch.cat([torch.multinomial(row, num_samples=1, generator=g) for row, g in rows])
    return torch.multinomial(probs, num_samples=1, generator=generator)


def next_token(
    logits: torch.Tensor,
    history: torch.Tensor,
    sampling: Sampling,
    generator: torch.Generator | Sequence[torch.Generator] | None,
) -> torch.Tensor:
    """The next token of each row (B, 1) from last-position logits (B, V) and the ids so far."""
    if sampling.temperature == 0:
        # Greedy needs no distribution: the (penalised) logits' argmax is the token.
        return penalize_repetition(logits.float(), history, sampling.repetition_penalty).argmax(dim=-1, keepdim=True)
    return draw(next_token_probabilities(logits, history, sampling), sampling, generator)


class ContextConfig(Protocol):
    """What generation reads of a model's `config`."""

    @property
    def block_size(self) -> int: ...


class CachedModel(Protocol):
    """A model fed through a KV cache (GPT)."""

    def new_cache(self, batch_size: int, length: int | None = None) -> KVCache: ...


def context_length(model: nn.Module) -> int:
    """The model's block_size. (nn.Module.__getattr__ types `config` as Tensor | Module; a GPT's
    config, unlike a bare GPTConfig, always has its block_size.)"""
    return cast(ContextConfig, model.config).block_size


def kept_on_slide(block_size: int, window_shift: int | None = None) -> int:
    """Tokens a full context window keeps when it slides (the module docstring's rule)."""
    return max(1, block_size - (window_shift or max(1, block_size // 4)))


# Inference mode, not only no_grad: no version counters or view tracking on the many small
# tensors of a step (about 5% more tokens/s at batch 1 on CPU, benchmarks/README.md).
@torch.inference_mode()
def generate_tokens(
    model: nn.Module,
    ids: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling = DEFAULT_SAMPLING,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    use_cache: bool = True,
    window_shift: int | None = None,
    pads: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of each row of `ids` (B, T), one (B,) tensor per step.

    Works with any model that maps ids (B, T) to logits (B, T, vocab) and has `config.block_size`;
    one with `new_cache(batch_size)` is fed through a KV cache. `pads` (B,) counts the padding
    each row of a left-padded batch starts with: every row then gets the tokens it would get
    alone (its own positions, attention and context window). One generator per row makes each
    row's draws its own.
    """
    block_size = context_length(model)
    keep = kept_on_slide(block_size, window_shift)
    # A cache as long as the text can get inside the window: no longer than the context.
    cache = (
        cast(CachedModel, model).new_cache(ids.size(0), ids.size(1) + max_new_tokens)
        if use_cache and hasattr(model, "new_cache")
        else None
    )
    was_training = model.training
    model.eval()
    try:
        if pads is not None:
            yield from _generate_padded(model, ids, pads, max_new_tokens, sampling, generator, cache, keep)
            return
        start = max(0, ids.size(1) - block_size)
        for _ in range(max_new_tokens):
            if ids.size(1) - start > block_size:
                start = ids.size(1) - keep
                if cache is not None:
                    cache.reset()
            # A cache is fed only the tokens it has not seen yet.
            fed = ids[:, start:] if cache is None else ids[:, start + cache.length :]
            logits = model(fed) if cache is None else model(fed, cache)
            next_id = next_token(logits[:, -1, :], ids, sampling, generator)
            ids = torch.cat([ids, next_id], dim=1)
            yield next_id[:, 0]
    finally:
        model.train(was_training)


def _generate_padded(
    model: nn.Module,
    ids: torch.Tensor,
    pads: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    cache: KVCache | None,
    keep: int,
) -> Iterator[torch.Tensor]:
    """generate_tokens for rows of different lengths. Each row's context window slides on its
    own, when the row alone would slide it; then every row's window is fed again, left-padded
    to the longest, which gives the rows that did not slide the very context they had."""
    block_size = context_length(model)
    rows = [row[pad:] for row, pad in zip(ids, pads.tolist(), strict=True)]
    starts = [max(0, len(row) - block_size) for row in rows]
    # Padding is no part of a row's text: the repetition penalty sees the row's first token instead.
    history = torch.where(
        torch.arange(ids.size(1), device=ids.device)[None, :] < pads[:, None], ids.gather(1, pads[:, None]), ids
    )
    window_pads: torch.Tensor | None = None
    for _ in range(max_new_tokens):
        slid = False
        for index, row in enumerate(rows):
            if len(row) - starts[index] > block_size:
                starts[index], slid = len(row) - keep, True
        if cache is None or window_pads is None or slid:
            windows = [row[start:] for row, start in zip(rows, starts, strict=True)]
            width = max(len(window) for window in windows)
            window_pads = torch.tensor([width - len(window) for window in windows], device=ids.device)
            fed = torch.stack([torch.cat([window.new_zeros(width - len(window)), window]) for window in windows])
            if cache is not None:
                cache.reset()
        else:
            fed = torch.stack([row[-1:] for row in rows])
        logits = model(fed, pads=window_pads) if cache is None else model(fed, cache, pads=window_pads)
        next_id = next_token(logits[:, -1, :], history, sampling, generator)
        rows = [torch.cat([row, token]) for row, token in zip(rows, next_id, strict=True)]
        history = torch.cat([history, next_id], dim=1)
        yield next_id[:, 0]


class StopScanner:
    """Cuts a growing text at the first stop sequence, holding back what might start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.shown = 0
        self.stopped = False
        self.tokens = 0  # generated before the text stopped

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


@dataclass(frozen=True)
class Completion:
    """One prompt's answer from `TextGenerator.complete`."""

    prompt: str
    text: str
    tokens: int  # generated before the text ended (end-of-text, a stop sequence or the limit)
    seed: int | None


@dataclass
class TextGenerator:
    """Text in, text out, for a model and the tokenizer it was trained with.

    `prompt_style` (minigpt.prompts) marks an instruction-tuned model: prompts are wrapped in it
    and its stop sequences end the answer, unless a call passes `wrap=False`.
    """

    model: nn.Module
    tokenizer: Tokenizer
    prompt_style: str | None = None

    @property
    def style(self) -> PromptStyle | None:
        return None if self.prompt_style is None else style_by_name(self.prompt_style, key="prompt style")

    def stream(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        sampling: Sampling = DEFAULT_SAMPLING,
        *,
        stop: Sequence[str] = (),
        seed: int | None = None,
        wrap: bool = True,
    ) -> Iterator[str]:
        """The continuation of `prompt` in pieces, as soon as they are produced."""
        samples = self._pieces(prompt, max_new_tokens, sampling, stop, 1, seed, wrap)
        return (pieces[0] for pieces in samples if pieces[0])

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        sampling: Sampling = DEFAULT_SAMPLING,
        *,
        stop: Sequence[str] = (),
        num_samples: int = 1,
        seed: int | None = None,
        wrap: bool = True,
    ) -> list[str]:
        """`num_samples` continuations of `prompt` (without the prompt), drawn in one batch.

        A continuation ends at the tokenizer's end-of-text token or the first stop sequence
        (neither shown), or after max_new_tokens tokens. The same seed gives the same text.
        """
        texts = [""] * num_samples
        for pieces in self._pieces(prompt, max_new_tokens, sampling, stop, num_samples, seed, wrap):
            texts = [text + piece for text, piece in zip(texts, pieces, strict=True)]
        return texts

    def complete(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 256,
        sampling: Sampling = DEFAULT_SAMPLING,
        *,
        stop: Sequence[str] = (),
        seeds: Sequence[int] | None = None,
        wrap: bool = True,
    ) -> list[Completion]:
        """An answer to each of `prompts`, generated as one left-padded batch.

        Batching does not change what a prompt gets: its logits are the ones it would get alone
        (so greedy text is the same), and with `seeds` (one per prompt) each prompt draws from
        its own generator, whatever else the batch holds.
        """
        if seeds is not None and len(seeds) != len(prompts):
            raise MinigptError(f"{len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
        device = next(self.model.parameters()).device
        encoded, stops = [], []
        for prompt in prompts:
            text, prompt_stops = self._wrap(prompt, stop, wrap, max_new_tokens)
            encoded.append(self._encode_prompt(text))
            stops.append(prompt_stops)
        longest = max(len(ids) for ids in encoded)
        pad_id = next((i for i in (self.tokenizer.pad_id, self.tokenizer.eot_id) if i is not None), 0)
        ids = torch.tensor([[pad_id] * (longest - len(row)) + row for row in encoded], device=device)
        # Prompts of one length need no padding, and take the unpadded loop.
        pads = (
            None
            if len({len(row) for row in encoded}) == 1
            else torch.tensor([longest - len(row) for row in encoded], device=device)
        )
        generators = None if seeds is None else [torch.Generator(device=device).manual_seed(s) for s in seeds]
        steps = generate_tokens(self.model, ids, max_new_tokens, sampling, generator=generators, pads=pads)
        scanners = [StopScanner(prompt_stops) for prompt_stops in stops]
        texts = [""] * len(prompts)
        for pieces in self._text_pieces(steps, scanners):
            texts = [text + piece for text, piece in zip(texts, pieces, strict=True)]
        return [
            Completion(prompt, text, scanner.tokens, None if seeds is None else seeds[index])
            for index, (prompt, text, scanner) in enumerate(zip(prompts, texts, scanners, strict=True))
        ]

    def _wrap(self, prompt: str, stop: Sequence[str], wrap: bool, max_new_tokens: int) -> tuple[str, list[str]]:
        """The text the model continues (in the prompt style, unless wrap=False) and the stop
        sequences that end it. Bad settings and prompts are reported before the first step."""
        if not prompt:
            raise MinigptError("the prompt is empty; give at least one character")
        if max_new_tokens < 0:
            raise MinigptError(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
        style = self.style if wrap else None
        if style is None:
            return prompt, list(stop)
        return style.format(prompt), [*stop, *style.stop_sequences]

    def _pieces(
        self,
        prompt: str,
        max_new_tokens: int,
        sampling: Sampling,
        stop: Sequence[str],
        num_samples: int,
        seed: int | None,
        wrap: bool,
    ) -> Iterator[list[str]]:
        """Each sample's new text per step."""
        if num_samples < 1:
            raise MinigptError(f"num_samples must be at least 1, got {num_samples}")
        text, stops = self._wrap(prompt, stop, wrap, max_new_tokens)
        device = next(self.model.parameters()).device
        ids = torch.tensor([self._encode_prompt(text)] * num_samples, dtype=torch.long, device=device)
        generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
        steps = generate_tokens(self.model, ids, max_new_tokens, sampling, generator=generator)
        return self._text_pieces(steps, [StopScanner(stops) for _ in range(num_samples)])

    def _encode_prompt(self, prompt: str) -> list[int]:
        """The prompt's ids; one longer than the context keeps its last block_size, with a warning."""
        block_size = context_length(self.model)
        ids = self.tokenizer.encode_prompt(prompt)
        if len(ids) > block_size:
            warnings.warn(
                f"the prompt has {len(ids)} tokens, more than the model's context of {block_size}; "
                f"only its last {block_size} tokens are used",
                stacklevel=4,
            )
            ids = ids[-block_size:]
        return ids

    def _text_pieces(self, steps: Iterator[torch.Tensor], scanners: list[StopScanner]) -> Iterator[list[str]]:
        eot, decode = self.tokenizer.eot_id, self.tokenizer.decode
        new_ids: list[list[int]] = [[] for _ in scanners]
        for step in steps:
            pieces = []
            for row, token in enumerate(step.tolist()):
                scanner = scanners[row]
                if scanner.stopped:
                    pieces.append("")
                    continue
                if token == eot:
                    pieces.append(scanner.update(decode(new_ids[row]), final=True))
                    scanner.stopped = True
                    continue
                new_ids[row].append(token)
                scanner.tokens += 1
                pieces.append(scanner.update(decode(new_ids[row])))
            yield pieces
            if all(scanner.stopped for scanner in scanners):
                return
        # Out of tokens: what was held back as a possible stop sequence's start is text after all.
        yield [
            "" if scanner.stopped else scanner.update(decode(row_ids), final=True)
            for scanner, row_ids in zip(scanners, new_ids, strict=True)
        ]
