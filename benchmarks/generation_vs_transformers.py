"""minigpt's generation against transformers' `generate` on the same weights, side by side.

    python benchmarks/generation_vs_transformers.py --repeats 3

The model: the `shakespeare` preset's shape (6 layers, 6 heads, 384 dims, 65-character
vocabulary) with a 1,024-token context so that 500 new tokens never slide the window (which
GPT-2 in transformers cannot do), exported with `minigpt export`'s code and loaded by
`AutoModelForCausalLM`. Its weights are random but drawn wide (std 0.1), so that the most likely
token stands clear of the next one and greedy decoding is a fair equality check. Both sides
decode greedily with their KV caches; the tokens must match. Batch 1 and batch 8 (eight prompts
of one length), 500 new tokens, runs in turns; time to first token is the time to a 1-token
generation (prompt pass included).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from minigpt.generation import TextGenerator
from minigpt.huggingface.export import export_model
from minigpt.model import GPT, GPTConfig
from minigpt.sampling import GREEDY
from minigpt.tokenizers import CharTokenizer

# Eight prompts of one length: a batch with no padding on either side.
PROMPTS = [
    "ROMEO:\nWhat",
    "JULIET:\nO R",
    "NURSE:\nGood",
    "KING:\nHark ",
    "FIRST CITIZ",
    "PRINCE:\nSee",
    "HAMLET:\nTo ",
    "LADY M:\nOut",
]


def model_and_tokenizer() -> tuple[GPT, CharTokenizer]:
    tokenizer = CharTokenizer.from_text(
        "".join(PROMPTS) + "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\n"
    )
    config = GPTConfig.from_preset("shakespeare", vocab_size=tokenizer.vocab_size, block_size=1024, dropout=0.0)
    torch.manual_seed(0)
    model = GPT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.1)
    return model, tokenizer


def ours(generator: TextGenerator, prompts: list[str], new_tokens: int) -> tuple[float, list[list[int]]]:
    started = time.perf_counter()
    completions = generator.complete(prompts, new_tokens, GREEDY)
    seconds = time.perf_counter() - started
    return seconds, [generator.tokenizer.encode(completion.text) for completion in completions]


def theirs(model: torch.nn.Module, ids: torch.Tensor, new_tokens: int) -> tuple[float, list[list[int]]]:
    started = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)  # no end-of-text: all of them
    seconds = time.perf_counter() - started
    return seconds, out[:, ids.size(1) :].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new_tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    model, tokenizer = model_and_tokenizer()
    generator = TextGenerator(model, tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        export_model(model, tokenizer, Path(folder))
        hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    print(
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, torch threads {torch.get_num_threads()}"
    )
    for batch in (1, 8):
        prompts = PROMPTS[:batch]
        ids = torch.tensor([tokenizer.encode(prompt) for prompt in prompts])
        times: dict[str, list[float]] = {"minigpt": [], "transformers": []}
        first: dict[str, list[float]] = {"minigpt": [], "transformers": []}
        for _ in range(options.repeats):
            seconds, our_tokens = ours(generator, prompts, options.new_tokens)
            times["minigpt"].append(seconds)
            seconds, their_tokens = theirs(hf, ids, options.new_tokens)
            times["transformers"].append(seconds)
            first["minigpt"].append(ours(generator, prompts, 1)[0])
            first["transformers"].append(theirs(hf, ids, 1)[0])
            same = our_tokens == their_tokens
        rate = {name: batch * options.new_tokens / statistics.median(runs) for name, runs in times.items()}
        print(f"batch {batch}: same greedy tokens: {'yes' if same else 'NO'}")
        for name in times:
            runs = ", ".join(f"{batch * options.new_tokens / s:.0f}" for s in times[name])
            print(
                f"  {name:12s} {rate[name]:7.0f} tokens/s ({runs}); first token "
                f"{1000 * statistics.median(first[name]):.1f} ms"
            )
        print(f"  minigpt / transformers: {rate['minigpt'] / rate['transformers']:.2f}x")


if __name__ == "__main__":
    main()
