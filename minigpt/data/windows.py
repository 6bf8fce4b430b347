"""Datasets over a 1-D array of token ids: (input, target) windows shifted by one token."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from minigpt.errors import MinigptError


def _to_pair(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.from_numpy(rows.astype(np.int64))
    return rows[..., :-1], rows[..., 1:]


class RandomWindowBatches(IterableDataset):
    """An endless stream of batches of windows at random offsets.

    Batch number `step` is a pure function of (seed, rank, step), so a run resumed at step N sees
    exactly the batches an uninterrupted run would, whatever the number of dataloader workers.
    Under data parallelism each rank draws only from its own contiguous 1/world_size of the
    tokens, so no two ranks ever train on the same window.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        shard = len(tokens) // world_size
        if shard < block_size + 1:
            raise MinigptError(
                f"the training split has {len(tokens)} tokens: too few for {world_size} ranks to get "
                f"{block_size + 1} each; use a longer text, fewer devices or a smaller data.block_size"
            )
        self.shard = (rank * shard, (rank + 1) * shard)  # token range this rank draws from
        self.tokens = tokens[self.shard[0] : self.shard[1]]
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self._offsets = np.arange(block_size + 1)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.rank, step))
        starts = rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)
        return _to_pair(self.tokens[starts[:, None] + self._offsets])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        # DataLoader takes batches from its workers round-robin, so worker w of n produces
        # steps w, w + n, w + 2n, ... and the loader hands them out in step order.
        first, stride = (0, 1) if worker is None else (worker.id, worker.num_workers)
        step = self.start_step + first
        while True:
            yield self.batch(step)
            step += stride


class SequentialWindows(Dataset):
    """Non-overlapping windows from the start of the array: a fixed evaluation set."""

    def __init__(self, tokens: np.ndarray, block_size: int, max_windows: int | None = None) -> None:
        self.tokens = tokens
        self.block_size = block_size
        count = (len(tokens) - 1) // block_size
        self.count = count if max_windows is None else min(count, max_windows)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = index * self.block_size
        return _to_pair(self.tokens[start : start + self.block_size + 1])
