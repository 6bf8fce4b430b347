"""Worker processes that each hold a copy of one tokenizer, for tokenizing big corpora.

Workers are spawned, not forked: a fork would copy the training process's page tables (torch,
Lightning, the model), so each worker would count all of that in its RSS and copy-on-write would
slowly duplicate it; a spawned worker re-imports only what the launching script imports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from minigpt.tokenizers.base import Tokenizer, tokenizer_from_json

_worker_tokenizer: Tokenizer | None = None


def _start_worker(tokenizer_json: str) -> None:
    global _worker_tokenizer
    # One thread per worker: several workers each spreading over every core would only contend.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = tokenizer_from_json(tokenizer_json)


def _encode(chunk: str, dtype: str) -> bytes:
    assert _worker_tokenizer is not None
    return np.asarray(_worker_tokenizer.encode(chunk), dtype=dtype).tobytes()


@dataclass
class TokenizingPool:
    executor: ProcessPoolExecutor
    workers: int

    def submit(self, chunk: str, dtype: np.dtype) -> Future:
        """Token ids of `chunk` as the bytes of a flat `dtype` array, computed in a worker."""
        return self.executor.submit(_encode, chunk, dtype.name)


@contextmanager
def tokenizing_pool(tokenizer: Tokenizer, workers: int) -> Iterator[TokenizingPool | None]:
    """`workers` processes holding `tokenizer`, or None (tokenize in this process) for 0."""
    if workers <= 0:
        yield None
        return
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(tokenizer.to_json(),)
    ) as executor:
        yield TokenizingPool(executor, workers)
