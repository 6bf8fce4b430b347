"""Named corpora: a TextDataModule that knows where its file lives and how to fetch it."""

from __future__ import annotations

from minigpt.data.sources import KnownFile
from minigpt.data.text import TextDataModule


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
