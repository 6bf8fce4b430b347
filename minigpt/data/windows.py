"""Datasets over a 1-D array of token ids: (input, target) windows shifted by one token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from minigpt.errors import MinigptError


def _to_pair(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.from_numpy(rows.astype(np.int64))
    return ids[..., :-1], ids[..., 1:]


class StepBatches(IterableDataset):
    """An endless stream of training batches where batch number `step` is a pure function of
    (seed, rank, world size, step): a run resumed at step N continues the very sequence an
    uninterrupted run would have seen, whatever the number of dataloader workers."""

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
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self._offsets = np.arange(block_size + 1)

    def windows(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The (input, target) windows that start at `starts`."""
        return _to_pair(self.tokens[starts[:, None] + self._offsets])

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        # DataLoader takes batches from its workers round-robin, so worker w of n produces
        # steps w, w + n, w + 2n, ... and the loader hands them out in step order.
        first, stride = (0, 1) if worker is None else (worker.id, worker.num_workers)
        step = self.start_step + first
        while True:
            yield self.batch(step)
            step += stride


class RandomWindowBatches(StepBatches):
    """Batches of windows at random offsets.

    Under data parallelism each rank draws only from its own contiguous 1/world_size of the
    tokens, so no two ranks ever train on the same window.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shard = len(self.tokens) // self.world_size
        if shard < self.block_size + 1:
            raise MinigptError(
                f"the training split has {len(self.tokens)} tokens: too few for {self.world_size} ranks to get "
                f"{self.block_size + 1} each; use a longer text, fewer devices or a smaller data.block_size"
            )
        self.shard = (self.rank * shard, (self.rank + 1) * shard)  # token range this rank draws from
        self.tokens = self.tokens[self.shard[0] : self.shard[1]]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.rank, step))
        return self.windows(rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size))


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


class EpochWindowBatches(StepBatches):
    """Batches that visit every window of the corpus once per epoch, split disjointly.

    Each epoch cuts the tokens into non-overlapping windows (from a seeded shift, so boundaries
    move between epochs) and shuffles them with a seeded permutation. Rank r of `world_size`
    takes every world_size-th window; its batch `step` is a fixed slice of those. Dataloader
    workers produce disjoint batches (worker w: steps w, w + n, ...), so within an epoch no two
    ranks or workers ever read the same window, and batch `step` still depends only on
    (seed, rank, world_size, step): a resumed run continues the same sequence.
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
        super().__init__(tokens, block_size, batch_size, seed, start_step, rank, world_size)
        # Leave room for a shift of up to block_size - 1 tokens: every epoch has as many windows.
        windows = (len(tokens) - block_size) // block_size
        self.windows_per_rank = windows // world_size
        self.batches_per_epoch = self.windows_per_rank // batch_size
        if self.batches_per_epoch == 0:
            raise MinigptError(
                f"the training split has {len(tokens)} tokens: too few for one batch of {batch_size} windows of "
                f"{block_size + 1} tokens on each of {world_size} ranks; use more text or smaller batches"
            )
        self._epoch: int | None = None
        self._starts: np.ndarray | None = None

    def window_starts(self, epoch: int) -> np.ndarray:
        """Start offsets of this rank's windows in `epoch`, in the order they are served."""
        if epoch != self._epoch:
            rng = np.random.default_rng((self.seed, epoch))
            shift = int(rng.integers(0, self.block_size))
            order = rng.permutation(self.windows_per_rank * self.world_size)
            self._starts = shift + order[self.rank :: self.world_size] * self.block_size
            self._epoch = epoch
        assert self._starts is not None
        return self._starts

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = divmod(step, self.batches_per_epoch)
        return self.windows(self.window_starts(epoch)[index * self.batch_size : (index + 1) * self.batch_size])
