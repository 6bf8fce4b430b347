"""Named corpora: a TextDataModule that knows where its file lives and how to fetch it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from minigpt.corpus.sources import KnownDirectory, KnownFile, resolve_directory
from minigpt.corpus.streaming import TextFile, TextSource
from minigpt.data.text import TextDataModule
from minigpt.errors import MinigptError, first_line
from minigpt.files import atomic_file
from minigpt.tokenizers import TokenizerSpec


class TinyShakespeare(TextDataModule):
    """Tiny Shakespeare (1,115,394 characters, 65 distinct), from Karpathy's char-rnn.

    Found at `data.path`, else `$MINIGPT_DATA_DIR/tinyshakespeare/input.txt`, else the cache
    (`~/.cache/minigpt/tinyshakespeare/input.txt`), else downloaded there and checked by sha256.
    """

    known_file = KnownFile(
        name="tinyshakespeare",
        filename="input.txt",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    )


class AceAttorney(TextDataModule):
    """Phoenix Wright: Ace Attorney dialogue (918,349 bytes, 86 distinct characters), as `Name:` lines.

    No public download exists: pass `data.path`, or put the file at
    `$MINIGPT_DATA_DIR/aceattorney/fine_tuning_input.txt` or `~/.cache/minigpt/aceattorney/`.
    Any UTF-8 text in the same format (a speaker's name and a colon on one line, the words on the
    next, a blank line between turns) works through `data.path`.
    """

    known_file = KnownFile(name="aceattorney", filename="fine_tuning_input.txt")


class WikiText103(TextDataModule):
    """WikiText-103 (raw): ~540 MB of Wikipedia articles to train on, plus validation and test.

    Reads the standard layout (wiki.train.raw, wiki.valid.raw, wiki.test.raw) from the folder
    `data.path`, else `$MINIGPT_DATA_DIR/wikitext/`, else `~/.cache/minigpt/wikitext/`, else
    streams it from the Hugging Face hub (`Salesforce/wikitext`, `wikitext-103-raw-v1`) into that
    cache folder. The train file is tokenized in chunks by worker processes straight into the
    token cache, so it never sits in memory; training visits each window once per epoch, split
    disjointly across ranks and dataloader workers.

    Args:
        path: The folder holding the split files.
        train_file: File name of the training split inside the folder.
        val_file: File name of the validation split.
        test_file: File name of the test split.
        tokenizer: Which tokenizer (default: regex-bpe, GPT-2 pattern, 8192 ids).
        **kwargs: Everything else TextDataModule takes (block_size, batch_size, ...).
    """

    hub_dataset: ClassVar[tuple[str, str]] = ("Salesforce/wikitext", "wikitext-103-raw-v1")
    standard_files: ClassVar[dict[str, str]] = {
        "train": "wiki.train.raw",
        "validation": "wiki.valid.raw",
        "test": "wiki.test.raw",
    }
    default_tokenizer: ClassVar[TokenizerSpec] = TokenizerSpec(kind="regex-bpe", vocab_size=8192, pattern="gpt2")

    def __init__(
        self,
        path: str | None = None,
        train_file: str = "wiki.train.raw",
        val_file: str = "wiki.valid.raw",
        test_file: str = "wiki.test.raw",
        tokenizer: TokenizerSpec | None = None,
        train_order: Literal["random", "epochs"] = "epochs",
        **kwargs: Any,
    ) -> None:
        super().__init__(path=path, tokenizer=tokenizer, train_order=train_order, **kwargs)
        self.files = {"train": train_file, "val": val_file, "test": test_file}

    def split_sources(self) -> dict[str, TextSource]:
        known = KnownDirectory("wikitext", tuple(dict.fromkeys(self.files.values())))
        folder = resolve_directory(self.path, known, download=self.download)
        return {split: TextFile(folder / name, self.errors) for split, name in self.files.items()}

    @classmethod
    def download(cls, folder: Path) -> None:
        """Stream each split from the hub into `folder`, one row (line) at a time."""
        from datasets import load_dataset  # slow to import; only needed here

        folder.mkdir(parents=True, exist_ok=True)
        name, config = cls.hub_dataset
        for split, filename in cls.standard_files.items():
            destination = folder / filename
            if destination.is_file():
                continue
            try:
                rows = load_dataset(name, config, split=split, streaming=True)
                with atomic_file(destination) as out:
                    for row in rows:
                        out.write(row["text"])
            except Exception as error:  # datasets raises many kinds (connection, hub, file system)
                raise MinigptError(
                    f"could not download {name} ({config}) {split} split ({first_line(error)}); provide the files "
                    "instead: "
                    f"pass data.path=FOLDER holding {', '.join(cls.standard_files.values())}, or set "
                    f"$MINIGPT_DATA_DIR so that $MINIGPT_DATA_DIR/wikitext/ holds them"
                ) from None
