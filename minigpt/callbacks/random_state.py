"""The random state a resumed run needs: saved in checkpoints, restored on resume."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback


class RandomState(Callback):
    """Saves torch's random state in checkpoints and restores it on resume.

    Lightning restores no random state; without it, dropout after a resume would draw other
    masks than the uninterrupted run did.
    """

    def state_dict(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if torch.cuda.is_available() and state_dict.get("cuda"):
            torch.cuda.set_rng_state_all(state_dict["cuda"])
