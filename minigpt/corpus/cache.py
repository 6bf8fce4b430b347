"""The token cache: token ids on disk as flat uint16/uint32 files, read back as memmaps.

A cache entry lives in a folder named by a hash of everything that decides its content (corpus
bytes, tokenizer, split rule), so a changed corpus or tokenizer never reads stale tokens and an
unchanged one is tokenized only once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from minigpt.corpus.pool import tokenizing_pool
from minigpt.corpus.streaming import TextSource, encode_to_file
from minigpt.tokenizers import Tokenizer


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def cache_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:24]


def load_splits(folder: Path) -> dict[str, np.ndarray] | None:
    """The cached splits in `folder`, or None when it holds no complete entry."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    dtype = np.dtype(meta["dtype"])
    return {name: _read_tokens(folder / f"{name}.bin", dtype) for name in meta["splits"]}


def _read_tokens(path: Path, dtype: np.dtype) -> np.ndarray:
    # An empty file cannot be mapped; the data module reports the split as too short instead.
    return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)


def build_splits(
    folder: Path, sources: Mapping[str, TextSource], tokenizer: Tokenizer, workers: int
) -> dict[str, np.ndarray]:
    """Tokenize each split's text straight to disk, then publish the entry with one rename so
    readers never see half an entry."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        with tokenizing_pool(tokenizer, workers) as pool:
            tokens = {
                name: encode_to_file(source, tokenizer, staging / f"{name}.bin", dtype, pool, f"tokenizing {name}")
                for name, source in sources.items()
            }
        meta = {"dtype": dtype.name, "splits": list(sources), "tokens": tokens}
        (staging / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(staging, folder)
        except OSError:
            # Another process (a DDP rank) published the same entry first; theirs is identical.
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    loaded = load_splits(folder)
    assert loaded is not None
    return loaded
