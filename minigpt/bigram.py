"""The bigram baseline: next-token logits read straight from a (vocab x vocab) table.

It shares GPT's interface (`config`, `forward`, `num_parameters`, `flops_per_token`) so the
LightningModule, generation and checkpoints treat both alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from minigpt.errors import MinigptError


@dataclass(frozen=True)
class BigramConfig:
    vocab_size: int
    block_size: int = 1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise MinigptError(f"model.gpt.{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> BigramConfig:
        return cls(vocab_size=values["vocab_size"], block_size=values.get("block_size", 1))


class BigramLM(nn.Module):
    def __init__(self, config: BigramConfig) -> None:
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)
        nn.init.normal_(self.table.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = True) -> int:
        return self.table.weight.numel()

    def parameter_roles(self, within: nn.Module | None = None) -> dict[str, list[nn.Parameter]]:
        """The table is an embedding: decayed by AdamW, as GPT's are (see GPT.parameter_roles)."""
        trainable = [param for param in self.table.parameters() if param.requires_grad]
        return {"matrices": [], "embeddings": trainable, "gains": [], "adapters": []}

    def flops_per_token(self) -> int:
        # An embedding lookup has no matmul; the softmax over the vocabulary dominates.
        return 6 * self.config.vocab_size

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table(idx)
