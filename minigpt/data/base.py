"""TokenDataModule: what every minigpt data module shares.

A data module owns the tokenizer (it trains one, or takes a checkpoint's and grows it to cover
its text), says how long its sequences are (`block_size`) and how many ids they use
(`vocab_size`, linked to the model by the CLI), and builds its loaders with private random
generators so that resuming a run never drifts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from minigpt.corpus.sources import KnownFile
from minigpt.errors import MinigptError
from minigpt.pretrained import load_tokenizer
from minigpt.tokenizers import Tokenizer


def check_batching(block_size: int | None, batch_size: int, val_fraction: float | None, num_workers: int) -> None:
    """The settings every data module shares: one-line errors naming the data.* key."""
    for name, value in (("block_size", block_size), ("batch_size", batch_size)):
        if value is not None and value <= 0:
            raise MinigptError(f"data.{name} must be a positive integer, got {value}")
    if val_fraction is not None and not 0.0 < val_fraction < 1.0:
        raise MinigptError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    if num_workers < 0:
        raise MinigptError(f"data.num_workers must be 0 or more, got {num_workers}")


class TokenDataModule(LightningDataModule):
    """Base of the text and instruction data modules (see their docstrings for the arguments)."""

    # A corpus with a canonical home (Tiny Shakespeare, Dolly) finds its own file.
    known_file: ClassVar[KnownFile | None] = None

    def __init__(
        self,
        path: str | None,
        block_size: int | None,
        batch_size: int,
        val_fraction: float | None,
        num_workers: int,
        seed: int,
        tokenizer_from: str | None,
    ) -> None:
        super().__init__()
        check_batching(block_size, batch_size, val_fraction, num_workers)
        self.path = path
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.seed = seed
        self.tokenizer_from = tokenizer_from
        self.tokenizer: Tokenizer | None = None

    def prepare(self) -> None:
        """Read the data and settle the tokenizer; cheap once done."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        self.prepare()
        assert self.tokenizer is not None
        return self.tokenizer.vocab_size

    def prepare_data(self) -> None:
        self.prepare()

    def setup(self, stage: str) -> None:
        self.prepare()

    def given_tokenizer(self, chunks: Callable[[], Iterable[str]], source: str) -> Tokenizer | None:
        """The tokenizer set on this module or named by `tokenizer_from` (None if neither), grown
        to cover the text when it lacks some of its symbols (a character vocabulary).

        New symbols are appended as new ids, so the ids a checkpoint was trained with keep their
        meaning; a warning names them, since their embeddings start untrained.
        """
        tokenizer = self.tokenizer
        if tokenizer is None and self.tokenizer_from is not None:
            tokenizer = load_tokenizer(self.tokenizer_from, key="data.tokenizer_from")
        if tokenizer is None:
            return None
        grown = tokenizer.extended(chunks())
        if grown is not tokenizer:
            old, new = tokenizer.vocab_size, grown.vocab_size
            added = [grown.decode([token_id]) for token_id in range(old, new)]
            count = sum(chunk.count(symbol) for chunk in chunks() for symbol in added)
            rank_zero_warn(
                f"{source} has {len(added)} characters outside the {old}-character vocabulary "
                f"({''.join(added)!r}, {count:,} occurrences); added them as ids {old}-{new - 1}, "
                "whose embeddings start untrained"
            )
        return grown

    def loader(
        self, dataset: Dataset | Sequence[Any], batch_size: int | None, shuffle: bool = False, **options: Any
    ) -> DataLoader:
        return DataLoader(
            dataset,  # type: ignore[arg-type]  # torch types it as Dataset; any sequence is a map-style one
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            # A private generator: creating a loader iterator must not draw from torch's global
            # one, or a resumed run's dropout would drift from the uninterrupted run's.
            generator=torch.Generator().manual_seed(self.seed),
            **options,
        )
