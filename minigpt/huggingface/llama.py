"""The Llama family in Hugging Face's format, in and out: Llama (SmolLM2, TinyLlama, Llama 3),
Qwen2 (Qwen2.5) and Qwen3 share one tensor layout, and each is a GPT with rotary positions,
RMSNorm and a SwiGLU MLP. Qwen2 adds biases to the query, key and value projections alone;
Qwen3 adds an RMSNorm with learned gains to each head's queries and keys before the rotation.

minigpt fuses what these keep apart (queries, keys and values in `c_attn`; SwiGLU's gate and up
projections in `c_fc`); reading joins them, writing splits them. Both turn channel pairs (first
half, second half) of each head with the same frequencies, base ** (-i / half).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from minigpt.errors import MinigptError
from minigpt.model import CONFIG_KEY, GPT, GPTConfig, RopeScaling

# What every member of the family has, as GPTConfig values.
ROTARY_LAYOUT = {
    "position": "rope",
    "norm": "rmsnorm",
    "mlp": "swiglu",
    "logit_softcap": 0.0,
    "value_embeddings": False,
}
# transformers' defaults where a config.json leaves a value out (all three families).
DEFAULT_NORM_EPS = 1e-6
DEFAULT_ROPE_THETA = 10000.0


@dataclass(frozen=True)
class Family:
    """One member of the Llama family: its names, what it has beyond Llama, and its defaults."""

    model_type: str
    architecture: str
    # GPTConfig values the member fixes, beyond the rotary layout.
    layout: dict[str, Any]
    # What a config.json without head_dim means: None for hidden_size / num_attention_heads.
    default_head_dim: int | None = None

    def differences(self, config: GPTConfig) -> list[str]:
        """The model's values this member cannot write, as `model.gpt.<field>: value`."""
        wanted = {**ROTARY_LAYOUT, **self.layout}
        if self is LLAMA:
            wanted["has_qkv_bias"] = config.bias  # Llama's attention_bias covers all four projections
        return [
            f"{CONFIG_KEY}.{name.removeprefix('has_')}: {getattr(config, name)}"
            for name, value in wanted.items()
            if getattr(config, name) != value
        ]


LLAMA = Family("llama", "LlamaForCausalLM", {"qk_norm": False})
QWEN2 = Family("qwen2", "Qwen2ForCausalLM", {"qk_norm": False, "bias": False, "has_qkv_bias": True})
QWEN3 = Family(
    "qwen3", "Qwen3ForCausalLM", {"qk_norm": True, "bias": False, "has_qkv_bias": False}, default_head_dim=128
)
FAMILIES = {family.model_type: family for family in (LLAMA, QWEN2, QWEN3)}


def rope_values(config: GPTConfig) -> dict[str, Any]:
    """`rope_parameters` as transformers 5 writes them."""
    values: dict[str, Any] = {"rope_type": "default", "rope_theta": float(config.rope_base)}
    scaling = config.rope_scaling
    if scaling is not None:
        values.update(
            rope_type=scaling.type,
            factor=scaling.factor,
            low_freq_factor=scaling.low_freq_factor,
            high_freq_factor=scaling.high_freq_factor,
            original_max_position_embeddings=scaling.original_context,
        )
    return values


def family_config(family: Family) -> Callable[[GPTConfig], dict[str, Any]]:
    def write(config: GPTConfig) -> dict[str, Any]:
        values = {
            "architectures": [family.architecture],
            "model_type": family.model_type,
            "vocab_size": config.vocab_size,
            "hidden_size": config.n_embd,
            "intermediate_size": config.mlp_width,
            "num_hidden_layers": config.n_layer,
            "num_attention_heads": config.n_head,
            "num_key_value_heads": config.kv_heads,
            "head_dim": config.head_width,
            "hidden_act": "silu",
            "max_position_embeddings": config.block_size,
            "rms_norm_eps": config.norm_eps,
            "rope_parameters": rope_values(config),
            "tie_word_embeddings": config.tie_embeddings,
            "attention_dropout": 0.0,
        }
        if family is LLAMA:
            values |= {"attention_bias": config.bias, "mlp_bias": config.bias}
        else:
            values |= {"use_sliding_window": False, "sliding_window": None}
        if family is QWEN3:
            values["attention_bias"] = False
        return values

    return write


def family_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """`model`'s weights under the family's names (QK-norm without gains writes unit gains)."""
    config = model.config
    state = {name: tensor.detach().float() for name, tensor in model.state_dict().items()}
    queries, keys = config.n_head * config.head_width, config.kv_heads * config.head_width
    tensors = {
        "model.embed_tokens.weight": state["transformer.wte.weight"],
        "model.norm.weight": state["transformer.ln_f.weight"],
    }
    if not config.tie_embeddings:
        tensors["lm_head.weight"] = state["lm_head.weight"]
    for index in range(config.n_layer):
        ours, theirs = f"transformer.h.{index}.", f"model.layers.{index}."
        tensors[theirs + "input_layernorm.weight"] = state[ours + "ln_1.weight"]
        tensors[theirs + "post_attention_layernorm.weight"] = state[ours + "ln_2.weight"]
        for suffix in ("weight", "bias"):
            attention = state.get(f"{ours}attn.c_attn.{suffix}")
            if attention is not None:
                parts = attention.split((queries, keys, keys))
                tensors |= {f"{theirs}self_attn.{name}_proj.{suffix}": t for name, t in zip("qkv", parts, strict=True)}
            named = {"self_attn.o_proj": "attn.c_proj", "mlp.down_proj": "mlp.c_proj"}
            for their, our in named.items():
                if f"{ours}{our}.{suffix}" in state:
                    tensors[f"{theirs}{their}.{suffix}"] = state[f"{ours}{our}.{suffix}"]
            if f"{ours}mlp.c_fc.{suffix}" in state:
                gate, up = state[f"{ours}mlp.c_fc.{suffix}"].chunk(2)
                tensors |= {f"{theirs}mlp.gate_proj.{suffix}": gate, f"{theirs}mlp.up_proj.{suffix}": up}
        if config.qk_norm:
            for name in ("q_norm", "k_norm"):
                gains = state.get(f"{ours}attn.{name}.weight", torch.ones(config.head_width))
                tensors[f"{theirs}self_attn.{name}.weight"] = gains
    return {name: tensor.contiguous().clone() for name, tensor in tensors.items()}


def read_rope(values: dict[str, Any], source: str) -> tuple[float, RopeScaling | None]:
    """The rotary base and scaling of a config.json, written by transformers 5 (rope_parameters)
    or earlier (rope_theta and rope_scaling), refusing a rope type minigpt does not compute."""
    if values.get("rope_parameters"):
        rope, where = dict(values["rope_parameters"]), "rope_parameters"
    else:
        rope, where = dict(values.get("rope_scaling") or {}), "rope_scaling"
        rope.setdefault("rope_theta", values.get("rope_theta", DEFAULT_ROPE_THETA))
    kind = rope.get("rope_type", rope.get("type", "default"))
    base = float(rope.get("rope_theta", DEFAULT_ROPE_THETA))
    if kind == "default":
        return base, None
    if kind != "llama3":
        raise MinigptError(
            f"{source}: {where}.rope_type {kind!r} does not load: minigpt computes plain rotary frequencies "
            "and Llama 3's scaling (llama3)"
        )
    scaling = RopeScaling(
        type="llama3",
        factor=float(rope["factor"]),
        low_freq_factor=float(rope["low_freq_factor"]),
        high_freq_factor=float(rope["high_freq_factor"]),
        original_context=int(rope["original_max_position_embeddings"]),
    )
    return base, scaling


def refusals(values: dict[str, Any], family: Family) -> dict[str, tuple[bool, str]]:
    """What a config.json may say that minigpt's blocks do not have: field -> (refused, why)."""
    layer_types = values.get("layer_types") or []
    return {
        "hidden_act": (values.get("hidden_act", "silu") != "silu", "minigpt's SwiGLU gates with silu"),
        "use_sliding_window": (bool(values.get("use_sliding_window")), "minigpt's layers attend to the whole context"),
        "layer_types": (
            any(kind != "full_attention" for kind in layer_types),
            "minigpt's layers all attend to the whole context",
        ),
        "rope_interleaved": (bool(values.get("rope_interleaved")), "minigpt turns (first half, second half) pairs"),
        "attention_bias": (
            (family is LLAMA and bool(values.get("attention_bias")) != bool(values.get("mlp_bias")))
            or (family is QWEN3 and bool(values.get("attention_bias"))),
            "minigpt has biases on every projection, on none, or on the query, key and value projections alone",
        ),
    }


def family_reader(family: Family) -> Callable[[dict[str, Any], str], GPTConfig]:
    def read(values: dict[str, Any], source: str) -> GPTConfig:
        """minigpt's GPTConfig for a config.json of this family, refusing in one line what
        minigpt's blocks do not have, naming the field."""
        for key, (refused, why) in refusals(values, family).items():
            if refused:
                raise MinigptError(f"{source}: {key} {values.get(key)!r} does not load: {why}")
        heads, width = values["num_attention_heads"], values["hidden_size"]
        base, scaling = read_rope(values, source)
        head_dim = values.get("head_dim") or family.default_head_dim or width // heads
        kv_heads = values.get("num_key_value_heads") or heads
        bias = family is LLAMA and bool(values.get("attention_bias"))
        # Values a GPTConfig would derive itself stay unset, so that a directory minigpt wrote
        # reads back as the very config it was written from.
        derived = GPTConfig(n_embd=width, n_head=heads, mlp="swiglu")
        return GPTConfig(
            vocab_size=values["vocab_size"],
            block_size=values["max_position_embeddings"],
            n_layer=values["num_hidden_layers"],
            n_head=heads,
            n_embd=width,
            bias=bias,
            position="rope",
            rope_base=base,
            norm="rmsnorm",
            qk_norm=family is QWEN3,
            mlp="swiglu",
            tie_embeddings=bool(values.get("tie_word_embeddings", False)),
            n_kv_head=None if kv_heads == heads else kv_heads,
            head_dim=None if head_dim * heads == width else head_dim,
            norm_eps=float(values.get("rms_norm_eps", DEFAULT_NORM_EPS)),
            qk_norm_gains=family is QWEN3,
            qkv_bias=True if family is QWEN2 else None,
            rope_scaling=scaling,
            mlp_hidden=None if values["intermediate_size"] == derived.mlp_width else values["intermediate_size"],
        )

    return read


def state_dict_from_family(tensors: dict[str, torch.Tensor], config: GPTConfig, source: str) -> dict[str, torch.Tensor]:
    """The family's tensors under minigpt's names: q, k, v joined into `c_attn`, gate and up into `c_fc`.

    `tensors` is consumed: each tensor is let go once used, so that a large model's weights are
    never in memory twice."""
    take = tensors.pop
    try:
        embedding = take("model.embed_tokens.weight")
        state = {
            "transformer.wte.weight": embedding,
            "transformer.ln_f.weight": take("model.norm.weight"),
            "lm_head.weight": embedding if config.tie_embeddings else take("lm_head.weight"),
        }
        for index in range(config.n_layer):
            ours, theirs = f"transformer.h.{index}.", f"model.layers.{index}."
            state[ours + "ln_1.weight"] = take(theirs + "input_layernorm.weight")
            state[ours + "ln_2.weight"] = take(theirs + "post_attention_layernorm.weight")
            suffixes = ("weight", "bias") if config.bias else ("weight",)
            attention_suffixes = ("weight", "bias") if config.has_qkv_bias else ("weight",)
            for suffix in attention_suffixes:
                attention = [take(f"{theirs}self_attn.{name}_proj.{suffix}") for name in ("q", "k", "v")]
                state[f"{ours}attn.c_attn.{suffix}"] = torch.cat(attention)
            for suffix in suffixes:
                state[f"{ours}attn.c_proj.{suffix}"] = take(f"{theirs}self_attn.o_proj.{suffix}")
                gated = [take(f"{theirs}mlp.{name}_proj.{suffix}") for name in ("gate", "up")]
                state[f"{ours}mlp.c_fc.{suffix}"] = torch.cat(gated)
                state[f"{ours}mlp.c_proj.{suffix}"] = take(f"{theirs}mlp.down_proj.{suffix}")
            if config.qk_norm_gains:
                for name in ("q_norm", "k_norm"):
                    state[f"{ours}attn.{name}.weight"] = take(f"{theirs}self_attn.{name}.weight")
    except KeyError as error:
        raise MinigptError(
            f"{source} lacks weight {error.args[0]}; is it a complete {config_family_name(config)} model.safetensors?"
        ) from None
    return {name: tensor.contiguous() for name, tensor in state.items()}


def config_family_name(config: GPTConfig) -> str:
    family = QWEN3 if config.qk_norm else QWEN2 if config.has_qkv_bias and not config.bias else LLAMA
    return family.architecture.removesuffix("ForCausalLM")
