"""Llama in Hugging Face's format, out: a GPT with rotary positions, RMSNorm and a SwiGLU MLP
has Llama's layout, so `LlamaForCausalLM.from_pretrained` reads it with the same logits.

minigpt fuses what Llama keeps apart (queries, keys and values in `c_attn`; SwiGLU's gate and up
projections in `c_fc`); the export splits them. Both turn channel pairs (first half, second
half) of each head with the same frequencies, base ** (-i / half).
"""

from __future__ import annotations

from typing import Any

import torch

from minigpt.model import GPT, GPTConfig

# Llama's layout, as GPTConfig values: what a GPT must have to export as Llama.
LLAMA_LAYOUT = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "qk_norm": False, "logit_softcap": 0.0}
RMS_NORM_EPSILON = 1e-5  # nn.RMSNorm's, which minigpt's rmsnorm blocks use


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
