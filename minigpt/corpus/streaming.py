"""Text in line-aligned chunks, tokenized by worker processes straight into a token file.

A corpus never sits in memory whole: files are read in blocks of about `CHUNK_BYTES`, cut after
the last line end in each block, and at most two chunks per worker are in flight, so memory
stays flat however large the corpus is. Chunk boundaries depend only on the text, so the token
file is the same for any number of workers.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from minigpt.corpus.pool import TokenizingPool
from minigpt.corpus.sources import not_utf8
from minigpt.errors import MinigptError
from minigpt.tokenizers import Tokenizer

CHUNK_BYTES = 1 << 18  # 256 KiB: encoding one costs a worker ~20 MB; 1 MiB cost ~140 MB
WORKERS_FROM_BYTES = 16 << 20
# The longest minigpt waits for a worker to tokenize one chunk (which takes well under a second):
# past it the worker is taken for hung, and the build stops with an error rather than waiting on.
CHUNK_TIMEOUT_S = 600
FEWER_WORKERS = "set data.tokenize_workers lower, or 0 to tokenize in the training process"
DecodeErrors = Literal["strict", "replace", "ignore"]


class TextSource:
    """One split's text, readable in chunks: a file on disk or a string already in memory."""

    name: str

    def chunks(self) -> Iterator[str]:
        raise NotImplementedError

    def fingerprint(self) -> bytes:
        raise NotImplementedError

    @property
    def size(self) -> int:
        """About the characters the chunks add up to (a file's bytes): the progress bar's total."""
        raise NotImplementedError


@dataclass
class TextFile(TextSource):
    """A UTF-8 file read in blocks; a bad byte is an error naming its offset and line, or is
    replaced/dropped when `errors` says so."""

    path: Path
    errors: DecodeErrors = "strict"
    key: str = "data.path"

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.path)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def fingerprint(self) -> bytes:
        digest = hashlib.sha256(self.errors.encode())
        with self.path.open("rb") as file:
            while block := file.read(1 << 24):
                digest.update(block)
        return digest.digest()

    def chunks(self) -> Iterator[str]:
        offset = line = 0
        with self.path.open("rb") as file:
            for block in _line_aligned_blocks(file):
                try:
                    yield block.decode("utf-8", errors=self.errors)
                except UnicodeDecodeError as error:
                    raise not_utf8(self.key, self.path, block, error, offset, line) from None
                offset += len(block)
                line += block.count(b"\n")


def _line_aligned_blocks(file: BinaryIO) -> Iterator[bytes]:
    carry = b""
    while block := file.read(CHUNK_BYTES):
        block = carry + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:  # no line end yet: a very long line, keep reading
            carry = block
            continue
        carry = block[cut:]
        yield block[:cut]
    if carry:
        yield carry


@dataclass
class InMemoryText(TextSource):
    """A string already read (a small corpus cut into train and validation)."""

    name: str
    text: str

    @property
    def size(self) -> int:
        return len(self.text)

    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.text.encode("utf-8", errors="surrogatepass")).digest()

    def chunks(self) -> Iterator[str]:
        start = 0
        while start < len(self.text):
            end = self.text.find("\n", start + CHUNK_BYTES) + 1 or len(self.text)
            yield self.text[start:end]
            start = end


# --- encoding ----------------------------------------------------------------------------------


def default_workers(total_size: int) -> int:
    """In-process for small corpora (starting workers costs more than it saves), else every core."""
    return 0 if total_size < WORKERS_FROM_BYTES else min(os.cpu_count() or 1, 8)


def encode_to_file(
    source: TextSource,
    tokenizer: Tokenizer,
    destination: Path,
    dtype: np.dtype,
    pool: TokenizingPool | None,
    desc: str,
) -> int:
    """Tokenize `source` into `destination` as flat `dtype` ids; returns the number of tokens.

    With a pool, at most two chunks per worker are in flight and results are written in order.
    """
    from tqdm.auto import tqdm  # a dependency of lightning; only needed here

    tokens = 0
    with (
        destination.open("wb") as out,
        tqdm(total=source.size, unit="char", unit_scale=True, desc=desc, disable=None, leave=False) as bar,
    ):

        def write(ids: bytes, chunk_size: int) -> None:
            nonlocal tokens
            out.write(ids)
            tokens += len(ids) // dtype.itemsize
            bar.update(chunk_size)

        if pool is None:
            for chunk in source.chunks():
                write(np.asarray(tokenizer.encode(chunk), dtype=dtype).tobytes(), len(chunk))
            return tokens
        pending: deque[tuple[Future, int]] = deque()
        try:
            for chunk in source.chunks():
                if len(pending) >= 2 * pool.workers:
                    future, size = pending.popleft()
                    write(future.result(timeout=CHUNK_TIMEOUT_S), size)
                pending.append((pool.submit(chunk, dtype), len(chunk)))
            while pending:
                future, size = pending.popleft()
                write(future.result(timeout=CHUNK_TIMEOUT_S), size)
        except BrokenProcessPool:
            raise MinigptError(
                f"a tokenizing worker died while tokenizing {source.name} for the token cache (out of memory?); "
                f"{FEWER_WORKERS}"
            ) from None
        except FutureTimeout:
            raise MinigptError(
                f"a tokenizing worker gave no tokens for a chunk of {source.name} in {CHUNK_TIMEOUT_S} s; "
                f"{FEWER_WORKERS}"
            ) from None
    return tokens
