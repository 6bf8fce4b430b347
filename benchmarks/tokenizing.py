"""Token-cache build against the tokenizer library's own speed, side by side.

    MINIGPT_DATA_DIR=../shared/data python benchmarks/tokenizing.py --size_mb 50 --repeats 2

A synthetic WikiText-103 train split of --size_mb (wiki.valid.raw and wiki.test.raw repeated)
is tokenized, in turns, by: Hugging Face `tokenizers`' own `Tokenizer.encode_batch` over the
text's lines, batches of 1,000 (its default parallelism: every core); and minigpt's token-cache
build (the path `minigpt fit` takes) with its default workers, one worker and two workers.
The tokenizer is the WikiText configs' regex-BPE (GPT-2 pattern, 8192 ids), trained once first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from minigpt.corpus.cache import build_splits
from minigpt.corpus.sources import DATA_DIR_ENV
from minigpt.corpus.streaming import TextFile, default_workers
from minigpt.tokenizers import TokenizerSpec

OUT = Path(__file__).resolve().parent / "out"
LINES_PER_BATCH = 1000


def synthetic_split(source: Path, path: Path, size_mb: int) -> int:
    block = (source / "wiki.valid.raw").read_bytes() + (source / "wiki.test.raw").read_bytes()
    written = 0
    with path.open("wb") as out:
        while written < size_mb * 1_000_000:
            out.write(block)
            written += len(block)
    return written


def raw_encode_batch(backend: object, path: Path) -> float:
    """Seconds for the library alone: its encode_batch over every line, LINES_PER_BATCH at a time."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    started = time.perf_counter()
    for start in range(0, len(lines), LINES_PER_BATCH):
        backend.encode_batch(lines[start : start + LINES_PER_BATCH], add_special_tokens=False)
    return time.perf_counter() - started


def cache_build(tokenizer: object, path: Path, workers: int, folder: Path) -> float:
    """Seconds for minigpt's token-cache build of the file with `workers` processes."""
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    build_splits(folder, {"train": TextFile(path)}, tokenizer, workers)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size_mb", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--source", default=os.path.join(os.environ.get(DATA_DIR_ENV, "../shared/data"), "wikitext"))
    options = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as work:
        path = Path(work) / "wiki.train.raw"
        size = synthetic_split(Path(options.source), path, options.size_mb)
        spec = TokenizerSpec(kind="regex-bpe", vocab_size=8192, pattern="gpt2", max_training_chars=20_000_000)
        tokenizer = spec.train(TextFile(path).chunks())
        defaults = default_workers(size)
        runs = {
            "tokenizers' encode_batch (all cores)": lambda: raw_encode_batch(tokenizer.backend, path),
            f"cache build, default workers ({defaults})": lambda: cache_build(
                tokenizer, path, defaults, Path(work) / "a"
            ),
            "cache build, 1 worker": lambda: cache_build(tokenizer, path, 1, Path(work) / "b"),
            "cache build, 2 workers": lambda: cache_build(tokenizer, path, 2, Path(work) / "c"),
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(options.repeats):
            for name, run in runs.items():
                seconds[name].append(run())
    speed = {name: size / 1e6 / statistics.median(times) for name, times in seconds.items()}
    raw, one, two = speed[next(iter(runs))], speed["cache build, 1 worker"], speed["cache build, 2 workers"]
    print(f"{os.cpu_count()} cores; {size / 1e6:.0f} MB of text; {options.repeats} runs each, in turns (median)")
    for name, mb_per_s in speed.items():
        runs_text = ", ".join(f"{size / 1e6 / t:.2f}" for t in seconds[name])
        print(f"{name:40s} {mb_per_s:5.2f} MB/s  ({runs_text})  {mb_per_s / raw:.0%} of encode_batch")
    print(f"2 workers / 1 worker: {two / one:.2f}x")


if __name__ == "__main__":
    main()
