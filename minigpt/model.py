"""A GPT language model in plain PyTorch, laid out like GPT-2 so its weights map one to one.

Nothing here imports Lightning: `from minigpt.model import GPT` is all a notebook needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from minigpt.errors import MinigptError

GELU_APPROXIMATION = {"exact": "none", "tanh": "tanh"}


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True
    # "exact" (erf) GELU is twice as fast as "tanh" on CPU; GPT-2's weights expect "tanh".
    gelu: str = "exact"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise MinigptError(f"model.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise MinigptError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        if self.gelu not in GELU_APPROXIMATION:
            raise MinigptError(f"model.gelu must be one of {', '.join(GELU_APPROXIMATION)}, got {self.gelu!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise MinigptError(f"model.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> GPTConfig:
        if name not in PRESETS:
            raise MinigptError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


# vocab_size 1 is a placeholder: the tokenizer decides it (from_preset(..., vocab_size=...)).
PRESETS: dict[str, GPTConfig] = {
    "nano": GPTConfig(vocab_size=1, block_size=64, n_layer=3, n_head=3, n_embd=48),
    "micro": GPTConfig(vocab_size=1, block_size=64, n_layer=4, n_head=4, n_embd=128),
    "mini": GPTConfig(vocab_size=1, block_size=128, n_layer=6, n_head=6, n_embd=192),
    "shakespeare": GPTConfig(vocab_size=1, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
    "gpt2": GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, gelu="tanh"),
    "gpt2-medium": GPTConfig(vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024, gelu="tanh"),
}


class LayerCache:
    """Keys and values one attention layer has seen, preallocated for a whole block."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys = keys
        self.values = values
        self.length = 0

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' keys and values; return all of them so far."""
        end = self.length + keys.size(2)
        self.keys[:, :, self.length : end] = keys
        self.values[:, :, self.length : end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class KVCache:
    """Per-layer keys and values of the tokens fed so far, so each new token costs one position.

    Positions are absolute (learned position embeddings), so a cache holds at most block_size
    tokens and cannot slide: when the context must move, `reset()` it and feed the cropped
    context again (minigpt.generation does exactly that).
    """

    def __init__(self, layers: list[LayerCache]) -> None:
        self.layers = layers

    @property
    def length(self) -> int:
        return self.layers[0].length

    def reset(self) -> None:
        for layer in self.layers:
            layer.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        # One fused projection for q, k, v: GPT-2's `c_attn`.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        batch, time, channels = x.shape
        q, k, v = self.c_attn(x).split(channels, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(batch, time, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.extend(k, v)
        dropout_p = self.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        elif time == 1:
            # One new token may look at every cached position: no mask needed.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            # New token i sits at position past + i and sees positions 0 .. past + i.
            mask = torch.ones(time, past + time, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(batch, time, channels)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate=GELU_APPROXIMATION[config.gelu])
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output projection reuses the token embedding.
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2 scales the projections that write into the residual stream by 1/sqrt(2 * n_layer)
        # so the stream's variance does not grow with depth.
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (token ones are tied to the head)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.transformer.wpe.weight.numel()
        return total

    def parameter_roles(self, within: nn.Module | None = None) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by the role optimizers give them, each parameter once.

        `matrices` are the blocks' linear weights (Muon's domain, decayed by AdamW); `embeddings`
        the token and position tables and the head (decayed); `gains` the norm gains and biases
        (never decayed). With `within`, only the parameters of that submodule.
        """
        wanted = None if within is None else {id(param) for param in within.parameters()}
        roles: dict[str, list[nn.Parameter]] = {"matrices": [], "embeddings": [], "gains": []}
        for name, param in self.named_parameters():
            if not param.requires_grad or (wanted is not None and id(param) not in wanted):
                continue
            if param.dim() < 2:
                roles["gains"].append(param)
            elif name.startswith("transformer.h."):
                roles["matrices"].append(param)
            else:
                roles["embeddings"].append(param)
        return roles

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward), as in the PaLM paper's appendix B."""
        c = self.config
        return 6 * self.num_parameters() + 12 * c.n_layer * c.n_embd * c.block_size

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty KV cache for `batch_size` sequences of up to block_size tokens."""
        c = self.config
        weight = self.transformer.wte.weight
        shape = (batch_size, c.n_head, c.block_size, c.n_embd // c.n_head)
        return KVCache([LayerCache(weight.new_zeros(shape), weight.new_zeros(shape)) for _ in range(c.n_layer)])

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Token ids (B, T) to next-token logits (B, T, vocab_size).

        With a cache, `idx` holds only the tokens that follow the cached ones; their keys and
        values are added to the cache.
        """
        time = idx.size(1)
        past = 0 if cache is None else cache.length
        if past + time > self.config.block_size:
            raise MinigptError(
                f"sequence of {past + time} tokens is longer than the model's block_size {self.config.block_size}"
            )
        positions = torch.arange(past, past + time, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))
        for index, block in enumerate(self.transformer.h):
            x = block(x, None if cache is None else cache.layers[index])
        return self.lm_head(self.transformer.ln_f(x))
