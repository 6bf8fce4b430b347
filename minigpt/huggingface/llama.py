"""Llama in Hugging Face's format, in and out: a GPT with rotary positions, RMSNorm and a SwiGLU
MLP has Llama's layout, so `LlamaForCausalLM.from_pretrained` reads it with the same logits, and
a Llama directory loads as such a GPT. With QK-norm as well it has Qwen3's layout (Llama's plus
an RMSNorm of each head's queries and keys before the rotation), and exports as
`Qwen3ForCausalLM`; minigpt's QK-norm has no gains, so Qwen3's are written as ones.

minigpt fuses what Llama keeps apart (queries, keys and values in `c_attn`; SwiGLU's gate and up
projections in `c_fc`); the export splits them. Both turn channel pairs (first half, second
half) of each head with the same frequencies, base ** (-i / half).
"""

from __future__ import annotations

from typing import Any

import torch

from minigpt.errors import MinigptError
from minigpt.model import GPT, RMS_NORM_EPSILON, GPTConfig

# Llama's layout, as GPTConfig values: what a GPT must have to export as Llama.
LLAMA_LAYOUT = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "qk_norm": False, "logit_softcap": 0.0}
# Qwen3's MLP has no biases.
QWEN3_LAYOUT = {**LLAMA_LAYOUT, "qk_norm": True, "bias": False}


def llama_config(config: GPTConfig) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.mlp_width,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_head,
        "head_dim": config.n_embd // config.n_head,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": RMS_NORM_EPSILON,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(config.rope_base)},
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": 0.0,
    }


def llama_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """`model`'s weights under LlamaForCausalLM's names."""
    state = {name: tensor.detach().float() for name, tensor in model.state_dict().items()}
    width = model.config.n_embd
    tensors = {
        "model.embed_tokens.weight": state["transformer.wte.weight"],
        "model.norm.weight": state["transformer.ln_f.weight"],
    }
    if not model.config.tie_embeddings:
        tensors["lm_head.weight"] = state["lm_head.weight"]
    suffixes = ("weight", "bias") if model.config.bias else ("weight",)
    for index in range(model.config.n_layer):
        ours, theirs = f"transformer.h.{index}.", f"model.layers.{index}."
        tensors[theirs + "input_layernorm.weight"] = state[ours + "ln_1.weight"]
        tensors[theirs + "post_attention_layernorm.weight"] = state[ours + "ln_2.weight"]
        for suffix in suffixes:
            query, key, value = state[f"{ours}attn.c_attn.{suffix}"].split(width)
            gate, up = state[f"{ours}mlp.c_fc.{suffix}"].chunk(2)
            tensors |= {
                f"{theirs}self_attn.q_proj.{suffix}": query,
                f"{theirs}self_attn.k_proj.{suffix}": key,
                f"{theirs}self_attn.v_proj.{suffix}": value,
                f"{theirs}self_attn.o_proj.{suffix}": state[f"{ours}attn.c_proj.{suffix}"],
                f"{theirs}mlp.gate_proj.{suffix}": gate,
                f"{theirs}mlp.up_proj.{suffix}": up,
                f"{theirs}mlp.down_proj.{suffix}": state[f"{ours}mlp.c_proj.{suffix}"],
            }
    return {name: tensor.contiguous().clone() for name, tensor in tensors.items()}


def qwen3_config(config: GPTConfig) -> dict[str, Any]:
    return {**llama_config(config), "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}


def qwen3_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """`model`'s weights under Qwen3ForCausalLM's names: Llama's, and unit QK-norm gains."""
    tensors = llama_tensors(model)
    unit = torch.ones(model.config.n_embd // model.config.n_head)
    for index in range(model.config.n_layer):
        for name in ("q_norm", "k_norm"):
            tensors[f"model.layers.{index}.self_attn.{name}.weight"] = unit.clone()
    return tensors


def config_from_llama(values: dict[str, Any], source: str) -> GPTConfig:
    """minigpt's GPTConfig for a Llama `config.json`, refusing what minigpt's blocks do not have."""
    heads, width = values["num_attention_heads"], values["hidden_size"]
    refusals = {
        "hidden_act": (values.get("hidden_act", "silu") != "silu", "minigpt's SwiGLU gates with silu"),
        "num_key_value_heads": (
            values.get("num_key_value_heads") not in (None, heads),
            "grouped-query attention: minigpt gives keys and values as many heads as queries",
        ),
        "head_dim": (values.get("head_dim") not in (None, width // heads), "minigpt's heads split hidden_size evenly"),
        "rms_norm_eps": (values.get("rms_norm_eps") != RMS_NORM_EPSILON, f"minigpt's RMSNorm uses {RMS_NORM_EPSILON}"),
        "intermediate_size": (values["intermediate_size"] % 32 != 0, "minigpt's SwiGLU widths are multiples of 32"),
        "attention_bias": (
            bool(values.get("attention_bias")) != bool(values.get("mlp_bias")),
            "minigpt has biases everywhere or nowhere (mlp_bias differs)",
        ),
    }
    for key, (refused, why) in refusals.items():
        if refused:
            raise MinigptError(f"{source}: {key} {values.get(key)!r} does not load: {why}")
    rope = values.get("rope_parameters") or {"rope_type": "default", "rope_theta": values.get("rope_theta", 10000.0)}
    if rope.get("rope_type", "default") != "default":
        raise MinigptError(
            f"{source}: rope_type {rope['rope_type']!r} does not load: minigpt's rotary embedding is plain"
        )
    return GPTConfig(
        vocab_size=values["vocab_size"],
        block_size=values["max_position_embeddings"],
        n_layer=values["num_hidden_layers"],
        n_head=heads,
        n_embd=width,
        bias=bool(values.get("attention_bias")),
        position="rope",
        rope_base=float(rope["rope_theta"]),
        norm="rmsnorm",
        mlp="swiglu",
        mlp_ratio=3 * values["intermediate_size"] / (2 * width),
        tie_embeddings=bool(values.get("tie_word_embeddings", False)),
    )


def state_dict_from_llama(tensors: dict[str, torch.Tensor], config: GPTConfig, source: str) -> dict[str, torch.Tensor]:
    """Llama's tensors under minigpt's names: q, k, v joined into `c_attn`, gate and up into `c_fc`."""
    try:
        state = {
            "transformer.wte.weight": tensors["model.embed_tokens.weight"],
            "transformer.ln_f.weight": tensors["model.norm.weight"],
            "lm_head.weight": tensors["model.embed_tokens.weight" if config.tie_embeddings else "lm_head.weight"],
        }
        suffixes = ("weight", "bias") if config.bias else ("weight",)
        for index in range(config.n_layer):
            ours, theirs = f"transformer.h.{index}.", f"model.layers.{index}."
            state[ours + "ln_1.weight"] = tensors[theirs + "input_layernorm.weight"]
            state[ours + "ln_2.weight"] = tensors[theirs + "post_attention_layernorm.weight"]
            for suffix in suffixes:
                attention = [tensors[f"{theirs}self_attn.{name}_proj.{suffix}"] for name in ("q", "k", "v")]
                state[f"{ours}attn.c_attn.{suffix}"] = torch.cat(attention)
                state[f"{ours}attn.c_proj.{suffix}"] = tensors[f"{theirs}self_attn.o_proj.{suffix}"]
                gated = [tensors[f"{theirs}mlp.{name}_proj.{suffix}"] for name in ("gate", "up")]
                state[f"{ours}mlp.c_fc.{suffix}"] = torch.cat(gated)
                state[f"{ours}mlp.c_proj.{suffix}"] = tensors[f"{theirs}mlp.down_proj.{suffix}"]
    except KeyError as error:
        raise MinigptError(
            f"{source} lacks weight {error.args[0]}; is it a complete Llama model.safetensors?"
        ) from None
    return {name: tensor.contiguous() for name, tensor in state.items()}
