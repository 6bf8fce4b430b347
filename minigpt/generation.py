"""Sampling text from any model that maps ids (B, T) to logits (B, T, vocab) and has a block_size."""

from __future__ import annotations

import torch
from torch import nn

from minigpt.errors import MinigptError
from minigpt.tokenizers import Tokenizer


def check_sampling(temperature: float, top_k: int | None) -> None:
    if temperature < 0:
        raise MinigptError(f"temperature must be 0 (greedy) or more, got {temperature}")
    if top_k is not None and top_k < 1:
        raise MinigptError(f"top_k must be at least 1, got {top_k}")


@torch.no_grad()
def generate(
    model: nn.Module,
    ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend `ids` (B, T) by `max_new_tokens` sampled tokens; temperature 0 picks the argmax.

    Past the model's block_size the context slides: only the last block_size tokens are seen.
    """
    check_sampling(temperature, top_k)
    was_training = model.training
    model.eval()
    block_size = model.config.block_size
    try:
        for _ in range(max_new_tokens):
            logits = model(ids[:, -block_size:])[:, -1, :].float()
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.size(-1):
                    kth = torch.topk(logits, top_k).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, num_samples=1, generator=generator)
            ids = torch.cat([ids, next_id], dim=1)
    finally:
        model.train(was_training)
    return ids


def generate_text(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> str:
    """The prompt's continuation (without the prompt) as text; the same seed gives the same text."""
    if not prompt:
        raise MinigptError("the prompt is empty; give at least one character")
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    out = generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator)
    return tokenizer.decode(out[0, ids.size(1) :].tolist())
