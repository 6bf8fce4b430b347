"""Sampling: how the next token is picked. Plain data, so commands build their options from it
without loading torch."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields

from minigpt.errors import MinigptError


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How the next token is picked from the logits: the repetition penalty, temperature, top-k
    and top-p, applied in that order. These defaults are every command's and every API's."""

    temperature: float = field(default=0.8, metadata={"help": "divides the logits; 0 picks the most likely token"})
    top_k: int | None = field(default=200, metadata={"help": "sample among the k most likely tokens"})
    top_p: float | None = field(
        default=None, metadata={"help": "sample among the fewest most likely tokens whose probabilities reach p"}
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata={"help": "> 1 makes tokens already in the context less likely (CTRL's rule); 1 turns it off"},
    )

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise MinigptError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise MinigptError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise MinigptError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise MinigptError(f"repetition_penalty must be positive (1 turns it off), got {self.repetition_penalty}")

    @classmethod
    def options(cls) -> list[tuple[str, type, object, str]]:
        """(name, value type, default, help) of each setting: what a command line offers."""
        hints = typing.get_type_hints(cls)
        options = []
        for setting in fields(cls):
            kinds = [kind for kind in typing.get_args(hints[setting.name]) if kind is not type(None)]
            options.append(
                (setting.name, kinds[0] if kinds else hints[setting.name], setting.default, setting.metadata["help"])
            )
        return options


DEFAULT_SAMPLING = Sampling()
GREEDY = Sampling(temperature=0.0)
