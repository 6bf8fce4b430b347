"""GPT-2 in Hugging Face's format, in and out: its config.json and its weights' names.

minigpt's GPT has GPT-2's layout, so the weights map name for name, with two differences:
GPT-2 stores its four projections as `Conv1D` (weight shaped (in, out), the transpose of
`nn.Linear`'s), and it always has biases (a minigpt model with `bias: false` exports zeros).
"""

from __future__ import annotations

from typing import Literal

import torch

from minigpt.errors import MinigptError
from minigpt.model import CONFIG_KEY, GPT, GPTConfig

# GPT-2's layout, as GPTConfig values: what a GPT must have to export as GPT-2.
GPT2_LAYOUT = {
    "position": "learned",
    "norm": "layernorm",
    "mlp": "gelu",
    "qk_norm": False,
    "tie_embeddings": True,
    "logit_softcap": 0.0,
    "rope_scaling": None,
    "value_embeddings": False,
}
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Causal-mask buffers that older transformers versions saved beside the weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
GELU_BY_ACTIVATION: dict[str, Literal["exact", "tanh"]] = {
    "gelu_new": "tanh",
    "gelu_pytorch_tanh": "tanh",
    "gelu": "exact",
}
ACTIVATION_BY_GELU = {"tanh": "gelu_new", "exact": "gelu"}
DEFAULT_LAYER_NORM_EPSILON = 1e-5  # GPT2Config's default


def gpt2_differences(config: GPTConfig) -> list[str]:
    """The model's values GPT-2 cannot hold, as `model.gpt.<field>: value`."""
    found = [name for name, value in GPT2_LAYOUT.items() if getattr(config, name) != value]
    if config.kv_heads != config.n_head:
        found.append("n_kv_head")
    if config.head_width * config.n_head != config.n_embd:
        found.append("head_dim")
    if config.has_qkv_bias != config.bias:
        found.append("qkv_bias")
    return [f"{CONFIG_KEY}.{name}: {getattr(config, name)}" for name in found]


def config_from_gpt2(values: dict, source: str) -> GPTConfig:
    """minigpt's GPTConfig for a GPT-2 `config.json`, refusing settings minigpt's blocks do not have."""
    activation = values.get("activation_function", "gelu_new")
    if activation not in GELU_BY_ACTIVATION:
        raise MinigptError(
            f"{source}: activation_function {activation!r} is not one of {', '.join(GELU_BY_ACTIVATION)}"
        )
    refusals = {
        "tie_word_embeddings": (not values.get("tie_word_embeddings", True), "minigpt ties GPT-2's head"),
        "scale_attn_weights": (not values.get("scale_attn_weights", True), "minigpt scales attention by 1/sqrt(d)"),
        "scale_attn_by_inverse_layer_idx": (
            bool(values.get("scale_attn_by_inverse_layer_idx")),
            "minigpt scales every layer's attention alike",
        ),
    }
    for key, (refused, why) in refusals.items():
        if refused:
            raise MinigptError(f"{source}: {key} {values.get(key)!r} does not load: {why}")
    n_embd = values["n_embd"]
    return GPTConfig(
        vocab_size=values["vocab_size"],
        block_size=values["n_positions"],
        n_layer=values["n_layer"],
        n_head=values["n_head"],
        n_embd=n_embd,
        dropout=values.get("resid_pdrop", 0.0),
        bias=True,
        gelu=GELU_BY_ACTIVATION[activation],
        norm_eps=float(values.get("layer_norm_epsilon", DEFAULT_LAYER_NORM_EPSILON)),
        mlp_hidden=values.get("n_inner") or None,
    )


def gpt2_config(config: GPTConfig) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None if config.mlp_width == 4 * config.n_embd else config.mlp_width,
        "activation_function": ACTIVATION_BY_GELU[config.gelu],
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.norm_eps,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
    }


def state_dict_from_gpt2(tensors: dict[str, torch.Tensor], config: GPTConfig, source: str) -> dict[str, torch.Tensor]:
    """GPT-2 tensors renamed (and Conv1D weights transposed) to minigpt's GPT state dict.

    `tensors` is consumed: each tensor is let go once converted, so that a large model's weights
    are never in memory twice."""
    state: dict[str, torch.Tensor] = {}
    for key in list(tensors):
        tensor = tensors.pop(key)
        # The hub's GPT-2 names start at the base model ("h.0..."); save_pretrained adds "transformer.".
        name = key.removeprefix("transformer.")
        if name.endswith(IGNORED_SUFFIXES) or name == "lm_head.weight":
            continue
        if name.endswith(CONV1D_WEIGHTS):
            tensor = tensor.t()
        state[f"transformer.{name}"] = tensor.contiguous()
    with torch.device("meta"):  # only the names: no weights to draw
        expected = GPT(config).state_dict().keys()
    missing = sorted(set(expected) - state.keys() - {"lm_head.weight"})
    if missing:
        shown = ", ".join(name.removeprefix("transformer.") for name in missing[:4])
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise MinigptError(f"{source} lacks weights {shown}{more}; is it a complete GPT-2 model.safetensors?")
    unexpected = sorted(state.keys() - set(expected))
    if unexpected:
        raise MinigptError(f"{source} has weights GPT-2 does not: {', '.join(unexpected[:4])}")
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def gpt2_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """`model`'s weights under GPT-2's names and shapes, as GPT2LMHeadModel.from_pretrained reads them."""
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to transformer.wte.weight, which is written
            continue
        if name.endswith(CONV1D_WEIGHTS):
            tensor = tensor.t()
        tensors[name] = tensor.detach().float().contiguous().clone()
    if not model.config.bias:
        # GPT-2 always has biases: zeros reproduce a bias-free model exactly.
        for name, tensor in list(tensors.items()):
            if name.endswith(".weight") and "wte" not in name and "wpe" not in name:
                out_features = tensor.shape[-1] if name.endswith(CONV1D_WEIGHTS) else tensor.shape[0]
                tensors[name.removesuffix(".weight") + ".bias"] = torch.zeros(out_features)
    return tensors
