"""LoRA: low-rank adapters on a GPT's linear layers, in plain PyTorch.

A target layer keeps its weight W, frozen, and learns W + (alpha / rank) * B A, with A (rank x in)
drawn at random and B (out x rank) starting at zero, so training starts from the base model's
exact outputs. Only A and B train (and, when the data added tokens to the vocabulary, the token
embedding and an untied head, whose new rows could not learn otherwise). A fused layer (`c_attn`:
queries, keys and values; SwiGLU's `c_fc`: gate and up) gets one adapter over the fused output.

The adapted layer is an `nn.Linear` with the same `weight` and `bias`, so the base weights keep
their names in the state dict; the adapters add `lora_a` and `lora_b` beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from minigpt.errors import MinigptError
from minigpt.field_docs import documented_fields

KEY = "model.lora"
# The linear layers of a GPT block, by the names they have inside it.
BLOCK_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
TARGETS = (*BLOCK_LINEARS, "lm_head")
ADAPTER_NAMES = ("lora_a", "lora_b")
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@documented_fields
@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters instead of full fine-tuning (set model.lora to use them)."""

    rank: int = 8
    """Rank of each adapter: the width of its A and B matrices."""
    alpha: float = 16.0
    """The adapters' output is scaled by alpha / rank."""
    dropout: float = 0.0
    """Dropout on an adapter's input in training."""
    targets: tuple[str, ...] = BLOCK_LINEARS
    """Which linear layers get adapters: attn.c_attn (queries, keys, values), attn.c_proj, mlp.c_fc,
    mlp.c_proj (in every block) and lm_head; default: every block's."""

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank <= 0:
            raise MinigptError(f"{KEY}.rank must be a positive integer, got {self.rank!r}")
        if not self.alpha > 0:
            raise MinigptError(f"{KEY}.alpha must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise MinigptError(f"{KEY}.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.targets:
            raise MinigptError(f"{KEY}.targets is empty; name at least one of {', '.join(TARGETS)}")
        unknown = [target for target in self.targets if target not in TARGETS]
        if unknown:
            raise MinigptError(
                f"{KEY}.targets: {', '.join(map(repr, unknown))} matches no layer; choose from {', '.join(TARGETS)}"
            )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, values: dict) -> LoRAConfig:
        return cls(**{**values, "targets": tuple(values.get("targets", BLOCK_LINEARS))})


class LoRALinear(nn.Linear):
    """A linear layer with a low-rank adapter: y = x W^T + b + scale * dropout(x) A^T B^T."""

    def __init__(self, base: nn.Linear, config: LoRAConfig) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.scale = config.scale
        self.lora_dropout = nn.Dropout(config.dropout)
        self.lora_a = nn.Parameter(base.weight.new_empty(config.rank, base.in_features))
        self.lora_b = nn.Parameter(base.weight.new_zeros(base.out_features, config.rank))
        # A as nn.Linear initialises a weight of its shape; B at zero makes the start exact.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adapted = F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b)
        # Added in place, scaled on the way: no output-sized temporaries beside the result (the
        # frozen layer's own output is needed by nothing in the backward pass).
        return F.linear(x, self.weight, self.bias).add_(adapted, alpha=self.scale)

    def delta(self) -> torch.Tensor:
        """What the adapter adds to the weight: scale * B A."""
        return self.scale * self.lora_b @ self.lora_a

    def merged(self) -> nn.Linear:
        """A plain linear layer with the adapter folded into its weight."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.weight + self.delta())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear.to(self.weight.device, self.weight.dtype)


def target_layers(model: nn.Module, targets: tuple[str, ...]) -> dict[str, nn.Linear]:
    """The model's linear layers that `targets` name, by their names in the model."""
    found = {}
    for name, module in model.named_modules():
        local = name.split(".", 3)[-1] if name.startswith("transformer.h.") else name
        if local in targets and isinstance(module, nn.Linear):
            found[name] = module
    missing = [target for target in targets if not any(name.endswith(target) for name in found)]
    if missing:
        raise MinigptError(f"{KEY}.targets: {', '.join(map(repr, missing))} matches no linear layer of this model")
    return found


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def add_adapters(model: nn.Module, config: LoRAConfig, train: tuple[nn.Module, ...] = ()) -> int:
    """Freeze `model`, give its target layers adapters, and leave trainable only the adapters and
    the modules in `train`; the number of trainable parameters."""
    layers = target_layers(model, config.targets)
    head = getattr(model, "lm_head", None)
    # The token embedding is an nn.Embedding, which nn.Module.__getattr__ types as Tensor | Module.
    if (
        "lm_head" in layers
        and head is not None
        and head.weight is cast(nn.Embedding, getattr(model, "transformer", model).wte).weight
    ):
        raise MinigptError(
            f"{KEY}.targets: lm_head is the token embedding's transpose in this model (a tied head); an adapter "
            "would untie them: leave lm_head out"
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name, layer in layers.items():
        replace_module(model, name, LoRALinear(layer, config))
    for module in train:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def merge_adapters(model: ModuleT) -> ModuleT:
    """`model` with every adapter folded into its layer's weight (the same outputs, plain layers)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            replace_module(model, name, module.merged())
    return model


def adapted_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def is_adapter(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ADAPTER_NAMES
