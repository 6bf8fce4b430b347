"""`minigpt tokenizer train`: learn a tokenizer from a text file and write it as tokenizer.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from minigpt.corpus.sources import check_readable_file
from minigpt.corpus.streaming import TextFile
from minigpt.tokenizers import TokenizerSpec, minigpt_settings_path


def run_train(options: argparse.Namespace) -> None:
    spec = TokenizerSpec(
        kind=options.kind,
        vocab_size=options.vocab_size,
        pattern=options.pattern,
        special_tokens=options.special_tokens,
        min_frequency=options.min_frequency,
        max_training_chars=options.max_training_chars,
    )
    source = TextFile(check_readable_file(Path(options.input), "--input"), options.errors, key="--input")
    tokenizer = spec.train(source.chunks())
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(tokenizer.to_huggingface(), encoding="utf-8")
    settings = minigpt_settings_path(output)
    settings.write_text(tokenizer.to_json(), encoding="utf-8")
    print(f"{spec.kind} tokenizer with {tokenizer.vocab_size} ids written to {output} (and {settings.name})")
