"""A GPT language model in plain PyTorch, laid out like GPT-2 so its weights map one to one.

Nothing here imports Lightning: `from minigpt.model import GPT` is all a notebook needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

import torch
import torch.nn.functional as F
from torch import nn

from minigpt.errors import MinigptError
from minigpt.field_docs import documented_fields
from minigpt.lora import is_adapter

GELU_APPROXIMATION = {"exact": "none", "tanh": "tanh"}
POSITIONS = ("learned", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "relu2", "swiglu")
# Where the fit config holds GPTConfig's fields: its errors name the keys a user writes.
CONFIG_KEY = "model.gpt"
# nn.LayerNorm's default, and GPTConfig.norm_eps's.
NORM_EPSILON = 1e-5
ROPE_SCALINGS = ("llama3",)


@documented_fields
@dataclass(frozen=True)
class RopeScaling:
    """Rotary frequencies stretched for a longer context than the model was first trained on, as
    Llama 3.1 and 3.2 do ("llama3"): wavelengths shorter than original_context / high_freq_factor
    stay, those longer than original_context / low_freq_factor are divided by `factor`, and the
    ones between are blended."""

    type: Literal["llama3"] = "llama3"
    """The rule; "llama3" is the one known."""
    factor: float = 8.0
    """How much longer the context became."""
    low_freq_factor: float = 1.0
    """Wavelengths over original_context / low_freq_factor are stretched fully."""
    high_freq_factor: float = 4.0
    """Wavelengths under original_context / high_freq_factor are kept."""
    original_context: int = 8192
    """The context length the frequencies were first trained for."""

    def __post_init__(self) -> None:
        key = f"{CONFIG_KEY}.rope_scaling"
        if self.type not in ROPE_SCALINGS:
            raise MinigptError(f"{key}.type must be one of {', '.join(ROPE_SCALINGS)}, got {self.type!r}")
        if not self.factor >= 1 or not 0 < self.low_freq_factor < self.high_freq_factor:
            raise MinigptError(
                f"{key} needs factor >= 1 and 0 < low_freq_factor < high_freq_factor, got {self.factor}, "
                f"{self.low_freq_factor} and {self.high_freq_factor}"
            )
        if not (isinstance(self.original_context, int) and self.original_context > 0):
            raise MinigptError(f"{key}.original_context must be a positive integer, got {self.original_context!r}")

    def frequencies(self, frequencies: torch.Tensor) -> torch.Tensor:
        """The rotary frequencies (radians per position) after scaling."""
        wavelengths = 2 * math.pi / frequencies
        short = self.original_context / self.high_freq_factor
        long = self.original_context / self.low_freq_factor
        # 0 where the wavelength is long (fully stretched), 1 where it is short (kept).
        blend = (
            (self.original_context / wavelengths - self.low_freq_factor)
            / (self.high_freq_factor - self.low_freq_factor)
        ).clamp(0, 1)
        blended = (1 - blend) * frequencies / self.factor + blend * frequencies
        return torch.where(
            wavelengths < short, frequencies, torch.where(wavelengths > long, frequencies / self.factor, blended)
        )


@documented_fields
@dataclass(frozen=True)
class GPTConfig:
    """The GPT's architecture: the one place each field is declared, defaulted, documented and
    checked. The fit config sets these under `model.gpt` (the docstrings below are its `--help`).

    Every default is GPT-2's layout, so GPT-2 weights and every config written before the later
    options existed load and behave exactly as they did.
    """

    vocab_size: int | None = None
    """Rows of the token embedding; unset: the tokenizer's size. Larger pads the vocabulary."""
    block_size: int | None = None
    """Context length in tokens; unset: the data's data.block_size."""
    n_layer: int = 6
    """Transformer blocks."""
    n_head: int = 6
    """Attention heads per block."""
    n_embd: int = 384
    """Width of the residual stream."""
    dropout: float = 0.0
    """Dropout probability in training."""
    bias: bool = True
    """Biases in the linear layers and LayerNorms."""
    gelu: Literal["exact", "tanh"] = "exact"
    """GELU form: "exact" (erf) runs twice as fast as "tanh" on CPU; GPT-2's weights expect "tanh"."""
    position: Literal["learned", "rope"] = "learned"
    """"learned" position embeddings (GPT-2), or "rope": rotary embeddings turn queries and keys by
    their position, and there is no position table."""
    rope_base: float = 10000.0
    """Base of the rotary frequencies."""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """"layernorm" (GPT-2), or "rmsnorm": scale by the root mean square only (no mean, no bias)."""
    qk_norm: bool = False
    """RMS-normalise each head's queries and keys before attention (bounded logits, higher safe LRs)."""
    mlp: Literal["gelu", "relu2", "swiglu"] = "gelu"
    """"gelu" (GPT-2), "relu2" (relu(x)**2) or "swiglu" (silu(gate) * up: three matrices, so its
    hidden width is 2/3 of mlp_ratio * n_embd, rounded up to a multiple of 32, to keep the
    parameter count)."""
    mlp_ratio: float = 4.0
    """MLP hidden width over n_embd."""
    tie_embeddings: bool = True
    """The head is the token embedding's transpose (GPT-2); false: a matrix of its own."""
    zero_init_proj: bool = False
    """Start the projections that write into the residual stream (and an untied head) at zero, so
    each block begins as the identity and the first steps train only the embeddings' path."""
    logit_softcap: float = 0.0
    """> 0: logits = softcap * tanh(logits / softcap), which keeps early logits from overshooting."""
    # The layouts of today's open models (Llama 3, SmolLM2, TinyLlama, Qwen2.5, Qwen3).
    n_kv_head: int | None = None
    """Key and value heads, shared by groups of query heads (grouped-query attention); unset: n_head."""
    head_dim: int | None = None
    """Width of each attention head; unset: n_embd / n_head."""
    norm_eps: float = NORM_EPSILON
    """Epsilon of every LayerNorm and RMSNorm, QK-norm included (Llama and Qwen write rms_norm_eps)."""
    qk_norm_gains: bool = False
    """With qk_norm: learn a gain per channel for the queries' and for the keys' RMSNorm (Qwen3)."""
    qkv_bias: bool | None = None
    """Biases on the query, key and value projections; unset: as `bias` (Qwen2 has them alone)."""
    rope_scaling: RopeScaling | None = None
    """Stretched rotary frequencies for a longer context (Llama 3.2's "llama3"); unset: plain rotary."""
    mlp_hidden: int | None = None
    """The MLP's hidden width (each of SwiGLU's two input projections); unset: from mlp_ratio."""
    value_embeddings: bool = False
    """Each layer also looks its tokens up in a table of its own and mixes that into the attention's
    values (learned weights, half and half at first): parameters that cost no multiplies. No
    Hugging Face architecture has them: such a model does not export."""

    def __post_init__(self) -> None:
        key = CONFIG_KEY
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if value is None and name in ("vocab_size", "block_size"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise MinigptError(f"{key}.{name} must be a positive integer, got {value!r}")
        for name in ("n_kv_head", "head_dim", "mlp_hidden"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise MinigptError(f"{key}.{name} must be unset or a positive integer, got {value!r}")
        if self.head_dim is None and self.n_embd % self.n_head:
            raise MinigptError(f"{key}.n_embd ({self.n_embd}) must be divisible by {key}.n_head ({self.n_head})")
        if self.n_head % self.kv_heads:
            raise MinigptError(
                f"{key}.n_head ({self.n_head}) must be divisible by {key}.n_kv_head ({self.n_kv_head}): each key "
                "and value head serves a group of query heads"
            )
        if self.gelu not in GELU_APPROXIMATION:
            raise MinigptError(f"{key}.gelu must be one of {', '.join(GELU_APPROXIMATION)}, got {self.gelu!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise MinigptError(f"{key}.dropout must be in [0, 1), got {self.dropout}")
        for name, choices in (("position", POSITIONS), ("norm", NORMS), ("mlp", MLPS)):
            if getattr(self, name) not in choices:
                raise MinigptError(f"{key}.{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        for name in ("bias", "qk_norm", "tie_embeddings", "zero_init_proj", "value_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise MinigptError(f"{key}.{name} must be true or false, got {getattr(self, name)!r}")
        if self.position == "rope" and self.head_width % 2:
            raise MinigptError(
                f"{key}.position rope turns pairs of channels, so the head size ({key}.head_dim, or "
                f"{key}.n_embd / {key}.n_head: {self.head_width}) must be even"
            )
        if self.rope_scaling is not None and self.position != "rope":
            raise MinigptError(f"{key}.rope_scaling scales rotary frequencies: set {key}.position to rope")
        if self.qk_norm_gains and not self.qk_norm:
            raise MinigptError(f"{key}.qk_norm_gains are the gains of QK-norm: set {key}.qk_norm to true")
        for name in ("qk_norm_gains",) + (("qkv_bias",) if self.qkv_bias is not None else ()):
            if not isinstance(getattr(self, name), bool):
                raise MinigptError(f"{key}.{name} must be true or false, got {getattr(self, name)!r}")
        if not (isinstance(self.norm_eps, (int, float)) and 0 < self.norm_eps < 1):
            raise MinigptError(f"{key}.norm_eps must be a small positive number, got {self.norm_eps!r}")
        if not (isinstance(self.rope_base, (int, float)) and self.rope_base > 1):
            raise MinigptError(f"{key}.rope_base must be a number above 1, got {self.rope_base!r}")
        if not (isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0):
            raise MinigptError(f"{key}.mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        if not (isinstance(self.logit_softcap, (int, float)) and self.logit_softcap >= 0):
            raise MinigptError(f"{key}.logit_softcap must be 0 (off) or a positive number, got {self.logit_softcap!r}")

    def sized(self, vocab_size: int, block_size: int) -> GPTConfig:
        """This architecture for a tokenizer of `vocab_size` ids and windows of `block_size`
        tokens: the sizes left unset take those values; set ones must hold them."""
        for name, needed in (("vocab_size", vocab_size), ("block_size", block_size)):
            value = getattr(self, name)
            if value is not None and value < needed:
                source = "the tokenizer has" if name == "vocab_size" else "data.block_size is"
                raise MinigptError(f"{CONFIG_KEY}.{name} is {value} but {source} {needed}; raise it or leave it unset")
        return replace(
            self,
            vocab_size=vocab_size if self.vocab_size is None else self.vocab_size,
            block_size=block_size if self.block_size is None else self.block_size,
        )

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_width(self) -> int:
        return self.n_embd // self.n_head if self.head_dim is None else self.head_dim

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width (for swiglu, the width of each of its two input projections)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        width = self.mlp_ratio * self.n_embd
        if self.mlp == "swiglu":
            return 32 * math.ceil(2 * width / 3 / 32)
        return max(1, round(width))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in known}
        if isinstance(given.get("rope_scaling"), dict):
            given["rope_scaling"] = RopeScaling(**given["rope_scaling"])
        return cls(**given)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GPTConfig:
        if name not in PRESETS:
            raise MinigptError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


# Named sizes for notebooks and scripts (`GPTConfig.from_preset("micro", vocab_size=65)`); the
# tokenizer decides vocab_size where a preset leaves it unset.
PRESETS: dict[str, GPTConfig] = {
    "nano": GPTConfig(block_size=64, n_layer=3, n_head=3, n_embd=48),
    "micro": GPTConfig(block_size=64, n_layer=4, n_head=4, n_embd=128),
    "mini": GPTConfig(block_size=128, n_layer=6, n_head=6, n_embd=192),
    "shakespeare": GPTConfig(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
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

    Positions are absolute (learned embeddings, or keys cached already turned by their rotary
    angle), so a cache holds at most block_size tokens and cannot slide: when the context must
    move, `reset()` it and feed the cropped context again (minigpt.generation does exactly that).
    """

    def __init__(self, layers: list[LayerCache]) -> None:
        self.layers = layers

    @property
    def length(self) -> int:
        return self.layers[0].length

    @property
    def capacity(self) -> int:
        return self.layers[0].keys.size(2)

    def reset(self) -> None:
        for layer in self.layers:
            layer.length = 0


class _CpuRMSNorm(torch.autograd.Function):
    """RMSNorm over the last dimension with a hand-written backward, computed in float32 at least.

    torch's CPU rms_norm is composed of several elementwise ops, and autograd differentiates each:
    forward and backward together take twice as long as these few passes (benchmarks/README.md,
    "Where the step's time goes")."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        inverse_rms = torch.rsqrt(wide.square().mean(-1, keepdim=True) + eps)
        normed = wide * inverse_rms
        ctx.save_for_backward(normed, inverse_rms, weight)
        ctx.x_dtype = x.dtype
        return (normed if weight is None else normed * weight).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        normed, inverse_rms, weight = ctx.saved_tensors
        grad = grad.to(normed.dtype)
        scaled = grad if weight is None else grad * weight
        # d(x / rms) / dx applied to `scaled`: remove its component along the normalised x.
        grad_x = (scaled - normed * (scaled * normed).mean(-1, keepdim=True)) * inverse_rms
        grad_weight = None
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = (grad * normed).flatten(0, -2).sum(0).to(weight.dtype)
        return grad_x.to(ctx.x_dtype), grad_weight, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """RMSNorm over x's last dimension: _CpuRMSNorm on CPUs, torch's own elsewhere (fused on CUDA)
    and under torch.compile (which fuses it itself)."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.rms_norm(x, (x.size(-1),), weight, eps)
    return cast(torch.Tensor, _CpuRMSNorm.apply(x, weight, eps))


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm (same parameters and state dict) over the last dimension, through `rms_norm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.eps is not None  # minigpt always gives the config's norm_eps
        return rms_norm(x, self.weight, self.eps)


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rotary_angles(config: GPTConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position's rotation, one frequency per channel pair, shaped
    (T, 1, head_dim / 2), or (B, T, 1, head_dim / 2) for positions that differ by row, to turn
    queries and keys laid out as (B, T, heads, head_dim).

    Computed per forward instead of kept as a buffer: it costs T * head_dim / 2 values, and the
    state dict stays the GPT-2 one."""
    half = config.head_width // 2
    frequencies = config.rope_base ** -(torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    if config.rope_scaling is not None:
        frequencies = config.rope_scaling.frequencies(frequencies)
    angles = positions.float()[..., None, None] * frequencies
    return angles.cos(), angles.sin()


def padded_attention(pads: torch.Tensor, past: int, time: int) -> torch.Tensor:
    """Which keys each query may see (B, 1, T, past + T) when row b starts with pads[b] padding
    tokens: causal, never a padding key, except that a padding query sees itself (a row that
    sees nothing would make NaNs that spread)."""
    keys = torch.arange(past + time, device=pads.device)
    queries = torch.arange(past, past + time, device=pads.device)
    causal = keys[None, :] <= queries[:, None]
    real = keys[None, :] >= pads[:, None]
    itself = keys[None, :] == queries[:, None]
    return (causal[None] & (real[:, None, :] | itself[None])).unsqueeze(1)


class AttentionOptions(TypedDict, total=False):
    """Keyword arguments of F.scaled_dot_product_attention that depend on the layer."""

    dropout_p: float
    enable_gqa: bool  # set only for grouped-query attention


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Turn each (first half, second half) channel pair of x's last dimension by its angle."""
    first, second = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, past: int, options: AttentionOptions
) -> torch.Tensor:
    """Scaled dot-product attention of (B, heads, T, head_dim) tensors: under `mask` if given,
    else causal for a fresh sequence, else (one new token after `past` cached ones) unmasked."""
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **options)
    return F.scaled_dot_product_attention(q, k, v, is_causal=past == 0, **options)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.head_dim = config.head_width
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        self.norm_eps = config.norm_eps
        # One fused projection for q, k, v (GPT-2's `c_attn`): n_head query heads, then
        # n_kv_head key heads and as many value heads.
        width = (self.n_head + 2 * self.n_kv_head) * self.head_dim
        self.c_attn = nn.Linear(config.n_embd, width, bias=config.has_qkv_bias)
        self.c_proj = nn.Linear(self.n_head * self.head_dim, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.qk_norm_gains:
            self.q_norm = RMSNorm(self.head_dim, eps=config.norm_eps)
            self.k_norm = RMSNorm(self.head_dim, eps=config.norm_eps)
        if config.value_embeddings:
            # Weights of the projected values and of the layer's value embedding.
            self.value_mix = nn.Parameter(torch.tensor([0.5, 0.5]))

    def qk_gains(self) -> torch.Tensor | None:
        """The QK-norm gains of every query head, then of every key head: (heads, head_dim)."""
        if not hasattr(self, "q_norm"):
            return None
        gains = (self.q_norm.weight.expand(self.n_head, -1), self.k_norm.weight.expand(self.n_kv_head, -1))
        return torch.cat(gains)

    def forward(
        self,
        x: torch.Tensor,
        cache: LayerCache | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        value_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, time, _ = x.shape
        queries, keys = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        qkv = self.c_attn(x)
        v = qkv[..., queries + keys :].view(batch, time, self.n_kv_head, self.head_dim)
        if value_embedding is not None:
            v = self.value_mix[0] * v + self.value_mix[1] * value_embedding.view_as(v)
        # Queries and keys together, (B, T, n_head + n_kv_head, head_dim): one kernel for both,
        # as small tensors make launches the cost.
        qk = qkv[..., : queries + keys].view(batch, time, self.n_head + self.n_kv_head, self.head_dim)
        if self.qk_norm:
            qk = rms_norm(qk, None, self.norm_eps)
            gains = self.qk_gains()
            if gains is not None:
                qk = qk * gains
        if rotary is not None:
            # Keys are cached already turned, so the positions must be the absolute ones.
            qk = rotate(qk, *rotary)
        q, k = qk.split((self.n_head, self.n_kv_head), dim=2)
        # (B, T, heads, head_dim) -> (B, heads, T, head_dim)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.extend(k, v)
        options: AttentionOptions = {"dropout_p": self.dropout if self.training else 0.0}
        if self.n_kv_head != self.n_head:
            options["enable_gqa"] = True
        if mask is None and past > 0 and time > 1:
            # New token i sits at position past + i and sees positions 0 .. past + i.
            mask = torch.ones(time, past + time, dtype=torch.bool, device=x.device).tril(diagonal=past)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # Under bf16 autocast on a CPU only the projections gain: torch's bf16 attention
            # backward there is many times slower than fp32's (benchmarks/README.md, "CPU choices").
            with torch.autocast("cpu", enabled=False):
                y = attend(q.float(), k.float(), v.float(), mask, past, options)
        else:
            y = attend(q, k, v, mask, past, options)
        y = y.transpose(1, 2).contiguous().view(batch, time, queries)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.kind = config.mlp
        width = config.mlp_width
        # SwiGLU's gate and up projections are one matrix (one matmul), split after it.
        self.c_fc = nn.Linear(config.n_embd, 2 * width if self.kind == "swiglu" else width, bias=config.bias)
        self.gelu = nn.GELU(approximate=GELU_APPROXIMATION[config.gelu])
        self.c_proj = nn.Linear(width, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.c_fc(x)
        if self.kind == "relu2":
            hidden = F.relu(hidden).square()
        elif self.kind == "swiglu":
            gate, up = hidden.chunk(2, dim=-1)
            hidden = F.silu(gate) * up
        else:
            hidden = self.gelu(hidden)
        return self.dropout(self.c_proj(hidden))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cache: LayerCache | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        value_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, rotary, mask, value_embedding)
        return x + self.mlp(self.ln_2(x))


if TYPE_CHECKING:

    class Blocks(nn.ModuleList):
        """GPT.transformer.h as the type checker sees it: a ModuleList of Blocks."""

        def __iter__(self) -> Iterator[Block]: ...

    class TransformerModules(nn.ModuleDict):
        """GPT.transformer as the type checker sees it. It is a plain nn.ModuleDict, whose entries
        nn.Module.__getattr__ types as Tensor | Module; their types are declared here."""

        wte: nn.Embedding
        wpe: nn.Embedding  # with position="learned" only
        drop: nn.Dropout
        h: Blocks
        ln_f: nn.Module
        ve: nn.ModuleList  # with value_embeddings only


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.vocab_size is None or config.block_size is None:
            raise MinigptError(
                "a GPT needs its vocab_size and block_size: GPTConfig.sized(vocab_size, block_size) fills them in"
            )
        self.config = config
        # Module order fixes the order random initial weights are drawn in: the default layout
        # must draw exactly as before, so optional modules only ever drop out, never move.
        modules: dict[str, nn.Module] = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.position == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        modules["drop"] = nn.Dropout(config.dropout)
        modules["h"] = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        modules["ln_f"] = make_norm(config)
        if config.value_embeddings:
            width = config.kv_heads * config.head_width
            modules["ve"] = nn.ModuleList(nn.Embedding(config.vocab_size, width) for _ in range(config.n_layer))
        self.transformer = cast("TransformerModules", nn.ModuleDict(modules))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # Weight tying: the output projection reuses the token embedding.
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2 scales the projections that write into the residual stream by 1/sqrt(2 * n_layer)
        # so the stream's variance does not grow with depth.
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                if config.zero_init_proj:
                    nn.init.zeros_(param)
                else:
                    nn.init.normal_(param, mean=0.0, std=residual_std)
        if config.zero_init_proj and not config.tie_embeddings:
            nn.init.zeros_(self.lm_head.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the lookup tables that cost no multiplies: the
        position and value embeddings, and the token embeddings unless they are the head's (tied)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if "wpe" in self.transformer:
                total -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                total -= self.transformer.wte.weight.numel()
            if self.config.value_embeddings:
                total -= sum(table.numel() for table in self.transformer.ve.parameters())
        return total

    def parameter_roles(self, within: nn.Module | None = None) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by the role optimizers give them, each parameter once.

        `matrices` are the blocks' linear weights (Muon's domain, decayed by AdamW); `embeddings`
        the token and position tables and the head (decayed); `gains` the norm gains and biases
        (never decayed); `adapters` LoRA's low-rank matrices (AdamW's, decayed). With `within`,
        only the parameters of that submodule.
        """
        wanted = None if within is None else {id(param) for param in within.parameters()}
        roles: dict[str, list[nn.Parameter]] = {"matrices": [], "embeddings": [], "gains": [], "adapters": []}
        for name, param in self.named_parameters():
            if not param.requires_grad or (wanted is not None and id(param) not in wanted):
                continue
            if is_adapter(name):
                roles["adapters"].append(param)
            elif param.dim() < 2:
                roles["gains"].append(param)
            elif name.startswith("transformer.h."):
                roles["matrices"].append(param)
            else:
                roles["embeddings"].append(param)
        return roles

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward), as in the PaLM paper's appendix B."""
        c = self.config
        assert c.block_size is not None  # a GPT's config has its sizes (__init__)
        return 6 * self.num_parameters() + 12 * c.n_layer * c.n_head * c.head_width * c.block_size

    def new_cache(self, batch_size: int, length: int | None = None) -> KVCache:
        """An empty KV cache for `batch_size` sequences of up to `length` tokens (default and at
        most block_size: a model with 128k positions needs no 128k-long cache for a short answer)."""
        c = self.config
        assert c.block_size is not None  # a GPT's config has its sizes (__init__)
        weight = self.transformer.wte.weight
        length = c.block_size if length is None else min(length, c.block_size)
        shape = (batch_size, c.kv_heads, length, c.head_width)
        # Uninitialised: a position is read only after it is written.
        return KVCache([LayerCache(weight.new_empty(shape), weight.new_empty(shape)) for _ in range(c.n_layer)])

    def forward(
        self, idx: torch.Tensor, cache: KVCache | None = None, pads: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token ids (B, T) to next-token logits (B, T, vocab_size).

        With a cache, `idx` holds only the tokens that follow the cached ones; their keys and
        values are added to the cache. `pads` (B,) counts the padding tokens each row starts
        with (prompts of several lengths, left-padded): a row's positions count from its first
        real token and no token attends to padding, so each row's logits are the ones it would
        get alone.
        """
        time = idx.size(1)
        past = 0 if cache is None else cache.length
        assert self.config.block_size is not None  # a GPT's config has its sizes (__init__)
        if past + time > self.config.block_size:
            raise MinigptError(
                f"sequence of {past + time} tokens is longer than the model's block_size {self.config.block_size}"
            )
        if cache is not None and past + time > cache.capacity:
            raise MinigptError(f"sequence of {past + time} tokens is longer than its KV cache of {cache.capacity}")
        positions = torch.arange(past, past + time, device=idx.device)
        mask = None
        if pads is not None:
            positions = (positions[None, :] - pads[:, None]).clamp(min=0)
            mask = padded_attention(pads, past, time)
        x = self.transformer.wte(idx)
        rotary = None
        if self.config.position == "rope":
            rotary = rotary_angles(self.config, positions)
        else:
            x = x + self.transformer.wpe(positions)
        x = self.transformer.drop(x)
        for index, block in enumerate(self.transformer.h):
            values = self.transformer.ve[index](idx) if self.config.value_embeddings else None
            x = block(x, None if cache is None else cache.layers[index], rotary, mask, values)
        logits = self.lm_head(self.transformer.ln_f(x))
        if self.config.logit_softcap:
            logits = self.config.logit_softcap * torch.tanh(logits / self.config.logit_softcap)
        return logits
