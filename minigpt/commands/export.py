"""`minigpt export`: a checkpoint as a Hugging Face model directory; a LoRA checkpoint also as a
PEFT adapter directory for its base model."""

from __future__ import annotations

import argparse
from pathlib import Path

from minigpt.checkpoint import Checkpoint, lora_base, open_source
from minigpt.errors import MinigptError
from minigpt.huggingface.export import export_model
from minigpt.huggingface.peft import export_adapters
from minigpt.lora import LoRAConfig, merge_adapters


def run(options: argparse.Namespace) -> None:
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise MinigptError(f"--out: {out} is a file; pass a directory")
    source = open_source(options.ckpt_path)
    if source.lora is None:
        checkpoint = Checkpoint(model=source.network(), tokenizer=source.tokenizer, prompt_style=source.prompt_style)
        written = export_model(checkpoint.model, checkpoint.tokenizer, out, checkpoint.style)
        print(f"wrote {out}/ ({', '.join(written)})")
        return
    adapted = source.adapted_network()
    base = source.lora["base"]
    base_vocab_size = lora_base(source).config.vocab_size
    adapters = out / "adapter"
    files = None
    if adapted.config.vocab_size == base_vocab_size:
        files = export_adapters(adapted, LoRAConfig.from_dict(source.lora["config"]), base, base_vocab_size, adapters)
    merged = Checkpoint(model=merge_adapters(adapted), tokenizer=source.tokenizer, prompt_style=source.prompt_style)
    written = export_model(merged.model, merged.tokenizer, out, merged.style)
    print(f"wrote {out}/ ({', '.join(written)}): the base {base} with the adapters merged in")
    if files is not None:
        print(
            f"wrote {adapters}/ ({', '.join(files)}): the adapters alone, for peft.PeftModel.from_pretrained on {base}"
        )
    else:
        print(
            f"minigpt: note: no PEFT adapter directory: the run added {adapted.config.vocab_size - base_vocab_size} "
            f"tokens to the vocabulary of {base}, which an adapter cannot add to its base model"
        )
