"""TextDataModule: text tokenized once into the token cache, served as windows."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from torch.utils.data import DataLoader

from minigpt.corpus.cache import build_splits, cache_key, load_splits
from minigpt.corpus.sources import cache_root, decode_text, resolve_file
from minigpt.corpus.streaming import DecodeErrors, InMemoryText, TextSource, default_workers
from minigpt.data.base import TokenDataModule
from minigpt.data.windows import EpochWindowBatches, RandomWindowBatches, SequentialWindows
from minigpt.errors import MinigptError
from minigpt.files import write_text_atomic
from minigpt.pretrained import load_tokenizer
from minigpt.tokenizers import Tokenizer, TokenizerSpec, tokenizer_from_json


class TextDataModule(TokenDataModule):
    """Language-model windows from a UTF-8 text file.

    The first `1 - val_fraction` of the text trains, the rest validates (and tests). Training
    batches are windows at random offsets (or, with `train_order: epochs`, every window once per
    epoch, disjoint across ranks and workers), a pure function of the seed and the step;
    validation is the fixed run of non-overlapping windows over the validation split, so
    validation losses compare across runs. Trained tokenizers learn from the training split
    only; a character vocabulary is the alphabet of all splits, so validation never meets an
    unknown character.

    With `tokenizer_from` (a fine-tune, or a resumed run) the text is encoded with that source's
    tokenizer instead. A character vocabulary that lacks some of the file's characters grows:
    they are appended as new ids (existing ids keep their meaning) and a warning names them.

    Args:
        path: The text file. Corpora with a known home (TinyShakespeare) find it themselves.
        tokenizer: Which tokenizer, e.g. {kind: bpe, vocab_size: 4096} (default: characters).
        block_size: Tokens in each window; also the model's context length.
        batch_size: Windows per batch.
        val_fraction: Share of the text, taken from its end, held out for validation.
        num_workers: Dataloader worker processes (0 loads in the training process).
        seed: Seed of the training windows' offsets.
        max_val_windows: Evaluate on at most this many validation windows (all when unset).
        train_order: random (windows at random offsets) or epochs (each window once per epoch).
        errors: What a byte that is not UTF-8 does: strict (stop, naming where), replace, ignore.
        tokenize_workers: Processes that build the token cache (default: 0 below 16 MB, else all cores).
        cache_dir: Token cache folder (default: $MINIGPT_CACHE_DIR/tokens or ~/.cache/minigpt/tokens).
        tokenizer_from: Take the tokenizer of this minigpt checkpoint, GPT-2 directory or hub name
            (linked from model.init_from, and set to --ckpt_path when a run resumes).
    """

    default_tokenizer: ClassVar[TokenizerSpec] = TokenizerSpec()
    # Always set here (the base allows None for minigpt.data.Prompts).
    block_size: int
    val_fraction: float

    def __init__(
        self,
        path: str | None = None,
        tokenizer: TokenizerSpec | None = None,
        block_size: int = 256,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 1337,
        max_val_windows: int | None = None,
        train_order: Literal["random", "epochs"] = "random",
        errors: DecodeErrors = "strict",
        tokenize_workers: int | None = None,
        cache_dir: str | None = None,
        tokenizer_from: str | None = None,
    ) -> None:
        super().__init__(path, block_size, batch_size, val_fraction, num_workers, seed, tokenizer_from)
        if train_order not in ("random", "epochs"):
            raise MinigptError(f"data.train_order must be random or epochs, got {train_order!r}")
        if errors not in ("strict", "replace", "ignore"):
            raise MinigptError(f"data.errors must be strict, replace or ignore, got {errors!r}")
        self.tokenizer_spec = tokenizer if tokenizer is not None else self.default_tokenizer
        self.tokenizer_is_explicit = tokenizer is not None
        self.max_val_windows = max_val_windows
        self.train_order = train_order
        self.errors = errors
        self.tokenize_workers = tokenize_workers
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "tokens"
        self._splits: dict[str, np.ndarray] | None = None

    def split_sources(self) -> dict[str, TextSource]:
        """Each split's text. Here: the file, cut at `val_fraction` from its end."""
        path = resolve_file(self.path, self.known_file)
        text = decode_text(path.read_bytes(), path, self.errors)
        if not text.strip():
            raise MinigptError(f"data.path: {path} is empty; give a file with text in it")
        cut = int(len(text) * (1.0 - self.val_fraction))
        return {"train": InMemoryText(str(path), text[:cut]), "val": InMemoryText(str(path), text[cut:])}

    def prepare(self) -> None:
        """Resolve the text, build the tokenizer and the token cache; cheap once done."""
        if self._splits is not None:
            return
        sources = self.split_sources()
        fingerprints = {name: source.fingerprint() for name, source in sources.items()}
        tokenizer = None
        # A data.tokenizer block set in the config wins over a linked tokenizer_from.
        if self.tokenizer is not None or not self.tokenizer_is_explicit:

            def chunks() -> Iterator[str]:
                return chain.from_iterable(source.chunks() for source in sources.values())

            tokenizer = self.given_tokenizer(chunks, next(iter(sources.values())).name)
        if tokenizer is None:
            tokenizer = self._tokenizer(sources, fingerprints)
        parts = [part for name in sorted(sources) for part in (name, fingerprints[name])]
        folder = self.cache_dir / cache_key(*parts, tokenizer.to_json())
        # Lightning runs prepare_data on one process per machine before any other calls setup,
        # so the other ranks find the entry that one built.
        splits = load_splits(folder)
        if splits is None:
            workers = self.tokenize_workers
            if workers is None:
                workers = default_workers(sum(source.size for source in sources.values()))
            splits = build_splits(folder, sources, tokenizer, workers)
        for split, tokens in splits.items():
            if len(tokens) < self.block_size + 1:
                raise MinigptError(
                    f"data.path: the {split} split of {sources[split].name} has {len(tokens)} tokens, fewer than "
                    f"block_size + 1 = {self.block_size + 1}; use a longer text or a smaller data.block_size"
                )
        self.tokenizer = tokenizer
        self._splits = splits

    def _tokenizer(self, sources: dict[str, TextSource], fingerprints: dict[str, bytes]) -> Tokenizer:
        """The configured tokenizer: loaded, or trained on the training split (and cached)."""
        spec = self.tokenizer_spec
        if not spec.is_trained:
            assert spec.path is not None
            return load_tokenizer(spec.path, key="tokenizer.path")
        # A character vocabulary is the alphabet of every split; learned merges see train only.
        learned_from = list(sources) if spec.tokenizer_class.learns_from_every_split else ["train"]
        key = cache_key(spec.fingerprint(), *(fingerprints[name] for name in learned_from))
        saved = self.cache_dir / "tokenizers" / f"{key}.json"
        if saved.is_file():
            return tokenizer_from_json(saved.read_text(), source=str(saved))
        tokenizer = spec.train(chain.from_iterable(sources[name].chunks() for name in learned_from))
        write_text_atomic(saved, tokenizer.to_json())
        return tokenizer

    def split(self, name: str) -> np.ndarray:
        self.prepare()
        assert self._splits is not None
        return self._splits[name]

    def train_dataloader(self) -> DataLoader:
        # Started at the trainer's step (restored before this is called), a resumed run continues
        # the very batch sequence it was interrupted in.
        trainer = self.trainer
        position = {"start_step": trainer.global_step, "rank": trainer.global_rank} if trainer else {}
        world_size = trainer.world_size if trainer else 1
        order = EpochWindowBatches if self.train_order == "epochs" else RandomWindowBatches
        dataset = order(
            self.split("train"), self.block_size, self.batch_size, seed=self.seed, world_size=world_size, **position
        )
        return self.loader(dataset, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self.loader(SequentialWindows(self.split("val"), self.block_size, self.max_val_windows), self.batch_size)

    def test_dataloader(self) -> DataLoader:
        # Corpora with their own test file (WikiText) test on it; a single file tests on val.
        self.prepare()
        assert self._splits is not None
        split = "test" if "test" in self._splits else "val"
        return self.loader(SequentialWindows(self.split(split), self.block_size, self.max_val_windows), self.batch_size)
