"""`minigpt export`: a checkpoint as a Hugging Face model directory."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from minigpt.errors import MinigptError


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt export",
        description="Write a checkpoint as a Hugging Face model directory that transformers' "
        "AutoModelForCausalLM and AutoTokenizer load as they are (weights, config, tokenizer, generation config).",
    )
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a checkpoint written by minigpt fit, a Hugging Face GPT-2 directory or a hub name",
    )
    parser.add_argument("--out", required=True, help="directory to write (created if missing)")
    return parser


def run(args: Sequence[str]) -> None:
    options = export_parser().parse_args(args[1:])
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise MinigptError(f"--out: {out} is a file; pass a directory")
    from minigpt.checkpoint import load_checkpoint
    from minigpt.huggingface.export import export_model

    checkpoint = load_checkpoint(options.ckpt_path)
    written = export_model(checkpoint.model, checkpoint.tokenizer, out)
    print(f"wrote {out}/ ({', '.join(written)})")
