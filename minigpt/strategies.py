"""Lightning strategies preset for minigpt's GPT."""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.strategies import FSDPStrategy

from minigpt.model import Block


class BlockFSDP(FSDPStrategy):
    """FSDP that shards the GPT one transformer block at a time.

    Each `Block` becomes its own FSDP unit, so only one block's full weights exist on a GPU at a
    time; with `activation_checkpointing` each block's activations are recomputed in the
    backward pass instead of stored. Lightning's FSDPStrategy takes these policies as Python
    sets of classes, which a YAML config cannot spell; this class spells them once.

    Args:
        activation_checkpointing: Recompute each block's activations in the backward pass.
        sharding_strategy: FULL_SHARD (weights, grads, optimizer state), SHARD_GRAD_OP, HYBRID_SHARD, ...
        state_dict_type: "full" writes one ordinary checkpoint; "sharded" one file per rank.
    """

    def __init__(
        self,
        activation_checkpointing: bool = True,
        sharding_strategy: str = "FULL_SHARD",
        state_dict_type: Literal["full", "sharded"] = "full",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            auto_wrap_policy={Block},
            activation_checkpointing_policy={Block} if activation_checkpointing else None,
            # Lightning takes the name in any case (it upper-cases it); its type lists upper case only.
            sharding_strategy=sharding_strategy,  # type: ignore[arg-type]
            state_dict_type=state_dict_type,
            **kwargs,
        )
