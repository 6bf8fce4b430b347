"""Data modules: where text comes from, how it becomes token windows or instruction batches.

The data modules are imported on first use (PEP 562), so `minigpt.data.prompts` loads without
Lightning: checkpoints need prompt styles, not data modules.
"""

from importlib import import_module
from typing import Any

_HOMES = {
    "Dolly": "minigpt.data.instruct",
    "InstructDataModule": "minigpt.data.instruct",
    "TextDataModule": "minigpt.data.text",
    "TinyShakespeare": "minigpt.data.corpora",
    "WikiText103": "minigpt.data.corpora",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'minigpt.data' has no attribute {name!r}")
