"""TextDataModule: one text file, tokenized once into the token cache, served as windows."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from minigpt.data.cache import cache_key, load_splits, write_splits
from minigpt.data.sources import KnownFile, cache_root, decode_text, resolve_file
from minigpt.data.windows import RandomWindowBatches, SequentialWindows
from minigpt.errors import MinigptError
from minigpt.pretrained import load_pretrained_tokenizer
from minigpt.tokenizers import CharTokenizer, Tokenizer


class TextDataModule(LightningDataModule):
    """Language-model windows from a UTF-8 text file.

    The first `1 - val_fraction` of the text trains, the rest validates (and tests). Training
    batches are windows at random offsets, a pure function of the seed and the step; validation
    is the fixed run of non-overlapping windows over the validation split, so validation losses
    compare across runs. The character vocabulary is every character of the file, so validation
    never meets an unknown character.

    With `tokenizer_from` (a fine-tune, or a resumed run) the text is encoded with that source's
    tokenizer instead. A character vocabulary that lacks some of the file's characters grows:
    they are appended as new ids (existing ids keep their meaning) and a warning names them.

    Args:
        path: The text file. Corpora with a known home (TinyShakespeare) find it themselves.
        block_size: Tokens in each window; also the model's context length.
        batch_size: Windows per batch.
        val_fraction: Share of the text, taken from its end, held out for validation.
        num_workers: Dataloader worker processes (0 loads in the training process).
        seed: Seed of the training windows' offsets.
        max_val_windows: Evaluate on at most this many validation windows (all when unset).
        cache_dir: Token cache folder (default: $MINIGPT_CACHE_DIR/tokens or ~/.cache/minigpt/tokens).
        tokenizer_from: Take the tokenizer of this minigpt checkpoint, GPT-2 directory or hub name
            (linked from model.init_from, and set to --ckpt_path when a run resumes).
    """

    known_file: ClassVar[KnownFile | None] = None

    def __init__(
        self,
        path: str | None = None,
        block_size: int = 256,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 1337,
        max_val_windows: int | None = None,
        cache_dir: str | None = None,
        tokenizer_from: str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("block_size", block_size), ("batch_size", batch_size)):
            if value <= 0:
                raise MinigptError(f"data.{name} must be a positive integer, got {value}")
        if not 0.0 < val_fraction < 1.0:
            raise MinigptError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
        if num_workers < 0:
            raise MinigptError(f"data.num_workers must be 0 or more, got {num_workers}")
        self.path = path
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.seed = seed
        self.max_val_windows = max_val_windows
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "tokens"
        self.tokenizer_from = tokenizer_from
        self.tokenizer: Tokenizer | None = None
        self._splits: dict[str, np.ndarray] | None = None

    @property
    def vocab_size(self) -> int:
        self.prepare()
        assert self.tokenizer is not None
        return self.tokenizer.vocab_size

    def prepare(self) -> None:
        """Resolve the file, build the tokenizer and the token cache; cheap once done."""
        if self._splits is not None:
            return
        path = resolve_file(self.path, self.known_file)
        raw = path.read_bytes()
        text = decode_text(raw, path)
        if not text.strip():
            raise MinigptError(f"data.path: {path} is empty; give a file with text in it")
        tokenizer = self._tokenizer_for(text, path)
        key = cache_key(hashlib.sha256(raw).digest(), tokenizer.to_json(), repr(self.val_fraction))
        folder = self.cache_dir / key
        splits = load_splits(folder)
        if splits is None:
            cut = int(len(text) * (1.0 - self.val_fraction))
            splits = write_splits(
                folder,
                {"train": tokenizer.encode(text[:cut]), "val": tokenizer.encode(text[cut:])},
                tokenizer.vocab_size,
            )
        for split, tokens in splits.items():
            if len(tokens) < self.block_size + 1:
                raise MinigptError(
                    f"data.path: the {split} split of {path} has {len(tokens)} tokens, fewer than "
                    f"block_size + 1 = {self.block_size + 1}; use a longer text or a smaller data.block_size"
                )
        self.tokenizer = tokenizer
        self._splits = splits

    def _tokenizer_for(self, text: str, path: Path) -> Tokenizer:
        tokenizer = self.tokenizer
        if tokenizer is None and self.tokenizer_from is not None:
            tokenizer = load_pretrained_tokenizer(self.tokenizer_from)
        if tokenizer is None:
            return CharTokenizer.train(text)
        if isinstance(tokenizer, CharTokenizer):
            grown = tokenizer.extended(text)
            if grown is not tokenizer:
                added = grown.chars[tokenizer.vocab_size :]
                count = sum(text.count(char) for char in added)
                rank_zero_warn(
                    f"{path} has {len(added)} characters outside the {tokenizer.vocab_size}-character vocabulary "
                    f"({''.join(added)!r}, {count:,} occurrences); added them as ids {tokenizer.vocab_size}-"
                    f"{grown.vocab_size - 1}, whose embeddings start untrained"
                )
            return grown
        return tokenizer

    def prepare_data(self) -> None:
        self.prepare()

    def setup(self, stage: str) -> None:
        self.prepare()

    def split(self, name: str) -> np.ndarray:
        self.prepare()
        assert self._splits is not None
        return self._splits[name]

    def _loader(self, dataset: torch.utils.data.Dataset, batch_size: int | None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        # Started at the trainer's step (restored before this is called), a resumed run continues
        # the very batch sequence it was interrupted in.
        trainer = self.trainer
        dataset = RandomWindowBatches(
            self.split("train"),
            self.block_size,
            self.batch_size,
            seed=self.seed,
            start_step=trainer.global_step if trainer else 0,
            rank=trainer.global_rank if trainer else 0,
        )
        return self._loader(dataset, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._loader(
            SequentialWindows(self.split("val"), self.block_size, self.max_val_windows), self.batch_size
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
