"""Checkpoint writes that are all or nothing.

Lightning writes a checkpoint through an fsspec transaction whose temporary file lives in the
system temp folder, so the final move may be a copy across file systems: a crash during it leaves
a truncated `last.ckpt`. Here the bytes go to a temporary file beside the target, are flushed to
disk, and replace it with one rename, which the OS makes atomic within a folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


def remove_stale_partials(folder: Path, name: str = "*") -> None:
    """Delete the temporary files of checkpoint writes that a crash interrupted."""
    for partial in folder.glob(f".{name}.*.partial"):
        partial.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Only one process writes a run's checkpoints: a leftover for this target is a crash's.
        remove_stale_partials(target.parent, target.name)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
