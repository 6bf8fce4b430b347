"""Token-cache build for a big corpus: throughput (MB/s) and peak memory of all processes.

    python benchmarks/token_cache.py --size_mb 500 --workers 2

Makes a synthetic WikiText-103 folder whose wiki.train.raw is the real wiki.valid.raw and
wiki.test.raw repeated to --size_mb (from $MINIGPT_DATA_DIR/wikitext or --source), trains the
BPE tokenizer on its first --training_chars characters, then builds the token cache exactly as
`minigpt fit` does (hash, tokenize in --workers processes, write), sampling the memory of this
process and its workers every 0.1 s. Peak PSS counts shared pages once; peak RSS counts them in
every process (an upper bound).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

from minigpt.corpus.sources import DATA_DIR_ENV
from minigpt.corpus.streaming import TextFile
from minigpt.data import WikiText103
from minigpt.tokenizers import TokenizerSpec

OUT = Path(__file__).resolve().parent / "out"


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB, from /proc/PID/smaps_rollup."""
    values = {"Rss:": 0, "Pss:": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, *rest = line.split()
            if name in values:
                values[name] = int(rest[0])
    except OSError:
        pass
    return values["Rss:"], values["Pss:"]


class PeakMemory:
    """Samples the summed RSS and PSS of this process and its descendants in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            samples = [memory_kb(pid) for pid in process_tree(os.getpid())]
            self.peak_rss = max(self.peak_rss, sum(rss for rss, _ in samples))
            self.peak_pss = max(self.peak_pss, sum(pss for _, pss in samples))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def synthetic_corpus(source: Path, folder: Path, size_mb: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("wiki.valid.raw", "wiki.test.raw"):
        shutil.copyfile(source / name, folder / name)
    block = (source / "wiki.valid.raw").read_bytes() + (source / "wiki.test.raw").read_bytes()
    written = 0
    with (folder / "wiki.train.raw").open("wb") as out:
        while written < size_mb * 1_000_000:
            out.write(block)
            written += len(block)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size_mb", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kind", default="regex-bpe", choices=["regex-bpe", "bpe", "char"])
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--training_chars", type=int, default=20_000_000)
    parser.add_argument("--source", default=os.path.join(os.environ.get(DATA_DIR_ENV, "../shared/data"), "wikitext"))
    options = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as work:
        folder = Path(work) / "wikitext"
        train_bytes = synthetic_corpus(Path(options.source), folder, options.size_mb)
        total_bytes = sum(path.stat().st_size for path in folder.iterdir())
        spec = TokenizerSpec(
            kind=options.kind,
            pattern="gpt2",
            vocab_size=None if options.kind == "char" else options.vocab_size,
            max_training_chars=options.training_chars,
        )
        with PeakMemory() as training_memory:
            started = time.perf_counter()
            tokenizer = spec.train(TextFile(folder / "wiki.train.raw").chunks())
            training_seconds = time.perf_counter() - started
        data = WikiText103(path=str(folder), tokenize_workers=options.workers, cache_dir=str(Path(work) / "tokens"))
        data.tokenizer = tokenizer  # trained above, so the build is timed alone
        with PeakMemory() as build_memory:
            started = time.perf_counter()
            data.prepare()
            build_seconds = time.perf_counter() - started
        tokens = sum(len(data.split(name)) for name in ("train", "val", "test"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; corpus {total_bytes / 1e6:.0f} MB")
    print(f"  (train split {train_bytes / 1e6:.0f} MB: wiki.valid.raw + wiki.test.raw repeated)")
    print(
        f"tokenizer training ({options.kind}, {tokenizer.vocab_size} ids, first {options.training_chars / 1e6:.0f}M "
        f"chars): {training_seconds:.1f} s, peak RSS {training_memory.peak_rss / 1024:.0f} MiB, "
        f"peak PSS {training_memory.peak_pss / 1024:.0f} MiB"
    )
    print(
        f"cache build, {options.workers} worker processes: {build_seconds:.1f} s = "
        f"{total_bytes / 1e6 / build_seconds:.2f} MB/s, {tokens / 1e6:.1f}M tokens; "
        f"peak RSS (sum over processes) {build_memory.peak_rss / 1024:.0f} MiB, "
        f"peak PSS {build_memory.peak_pss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
