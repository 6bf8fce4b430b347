"""A LoRA run's adapters as a PEFT adapter directory: `peft.PeftModel.from_pretrained(base, DIR)`
on the base model in transformers gives the logits minigpt's adapted model gives.

minigpt adapts its fused layers with one adapter each (`c_attn`: queries, keys and values;
SwiGLU's `c_fc`: gate and up). A layout that keeps them apart (Llama's q_proj, k_proj, v_proj)
gets one adapter per part: the same A, and the rows of B that make that part's output, which
adds exactly what the fused adapter adds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from minigpt.errors import MinigptError
from minigpt.huggingface.gpt2 import gpt2_differences
from minigpt.lora import LoRAConfig, LoRALinear, adapted_layers
from minigpt.model import GPT

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def split_parts(model: GPT, local: str, gpt2: bool) -> list[tuple[str, slice]]:
    """The module names transformers has for minigpt's layer `local` (within a block), and the
    rows of its output each one makes."""
    config = model.config
    if gpt2:  # GPT-2 fuses as minigpt does: the same modules
        return [(local, slice(None))]
    if local == "attn.c_attn":
        queries, keys = config.n_head * config.head_width, config.kv_heads * config.head_width
        bounds = {"q_proj": (0, queries), "k_proj": (queries, queries + keys), "v_proj": (queries + keys, None)}
        return [(f"self_attn.{name}", slice(*bound)) for name, bound in bounds.items()]
    if local == "mlp.c_fc":
        width = config.mlp_width
        return [("mlp.gate_proj", slice(0, width)), ("mlp.up_proj", slice(width, None))]
    return [({"attn.c_proj": "self_attn.o_proj", "mlp.c_proj": "mlp.down_proj"}[local], slice(None))]


def adapter_tensors(model: GPT) -> tuple[dict[str, torch.Tensor], list[str]]:
    """PEFT's tensors for `model`'s adapters, and the module names they target."""
    gpt2 = not gpt2_differences(model.config)
    prefix = "base_model.model"
    tensors: dict[str, torch.Tensor] = {}
    targets: set[str] = set()
    for name, layer in adapted_layers(model).items():
        if name == "lm_head":
            parts, path = [("lm_head", slice(None))], ""
        else:
            index, local = name.removeprefix("transformer.h.").split(".", 1)
            path = f"transformer.h.{index}." if gpt2 else f"model.layers.{index}."
            parts = split_parts(model, local, gpt2)
        for module, rows in parts:
            a, b = layer.lora_a.detach().float(), layer.lora_b.detach().float()[rows]
            tensors[f"{prefix}.{path}{module}.lora_A.weight"] = a.contiguous().clone()
            tensors[f"{prefix}.{path}{module}.lora_B.weight"] = b.contiguous().clone()
            targets.add(module)
    return tensors, sorted(targets)


def export_adapters(model: nn.Module, lora: LoRAConfig, base: str, base_vocab_size: int, out: Path) -> tuple[str, ...]:
    """Write the adapters of `model` (unmerged) for PEFT into `out`; the names of the files."""
    if not isinstance(model, GPT) or not any(isinstance(m, LoRALinear) for m in model.modules()):
        raise MinigptError("only a LoRA checkpoint has adapters to write for PEFT")
    assert model.config.vocab_size is not None  # a GPT's config has its sizes
    if model.config.vocab_size != base_vocab_size:
        raise MinigptError(
            f"the run added {model.config.vocab_size - base_vocab_size} tokens to the base's vocabulary, which a PEFT "
            "adapter cannot add to its base model; use the merged export, which holds them"
        )
    tensors, targets = adapter_tensors(model)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": targets,
        # GPT-2 stores its projections transposed (Conv1D).
        "fan_in_fan_out": not gpt2_differences(model.config),
        "bias": "none",
        "modules_to_save": None,
        "init_lora_weights": True,
        "use_rslora": False,
        "inference_mode": True,
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return ADAPTER_FILES
