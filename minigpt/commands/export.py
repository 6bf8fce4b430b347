"""`minigpt export`: a checkpoint as a Hugging Face model directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from minigpt.checkpoint import load_checkpoint
from minigpt.errors import MinigptError
from minigpt.huggingface.export import export_model


def run(options: argparse.Namespace) -> None:
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise MinigptError(f"--out: {out} is a file; pass a directory")
    checkpoint = load_checkpoint(options.ckpt_path)
    written = export_model(checkpoint.model, checkpoint.tokenizer, out, checkpoint.style)
    print(f"wrote {out}/ ({', '.join(written)})")
