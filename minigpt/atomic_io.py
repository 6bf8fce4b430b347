"""Checkpoint writes that are all or nothing.

Lightning writes a checkpoint through an fsspec transaction whose temporary file lives in the
system temp folder, so the final move may be a copy across file systems: a crash during it leaves
a truncated `last.ckpt`. This plugin writes through `minigpt.files.atomic_file` instead: a
temporary file beside the target, flushed to disk, renamed over it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from minigpt.files import atomic_file, remove_stale_partials


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        target = Path(path)
        # Writes a crash or a kill interrupted, in this folder: nobody will finish them.
        remove_stale_partials(target.parent)
        with atomic_file(target, "wb") as file:
            torch.save(checkpoint, file)
