from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from torch.utils.data import DataLoader

from minigpt.data import TextDataModule, TinyShakespeare
from minigpt.data import text as text_module
from minigpt.data.windows import RandomWindowBatches, SequentialWindows
from minigpt.errors import MinigptError

TOKENS = np.arange(1000, dtype=np.uint16)


def test_windows_align_inputs_and_targets() -> None:
    inputs, targets = RandomWindowBatches(TOKENS, block_size=8, batch_size=4, seed=0).batch(3)
    assert inputs.shape == targets.shape == (4, 8)
    assert inputs.dtype == torch.long
    torch.testing.assert_close(inputs[:, 1:], targets[:, :-1])
    # Consecutive corpus tokens: each target is the token after its input.
    torch.testing.assert_close(targets, inputs + 1)


def test_batches_are_a_function_of_seed_rank_and_step() -> None:
    dataset = RandomWindowBatches(TOKENS, block_size=8, batch_size=4, seed=0)
    torch.testing.assert_close(dataset.batch(5)[0], dataset.batch(5)[0])
    assert not torch.equal(dataset.batch(5)[0], dataset.batch(6)[0])
    ranks = [RandomWindowBatches(TOKENS, block_size=8, batch_size=4, seed=0, rank=r, world_size=2) for r in (0, 1)]
    first, second = (set(rank.batch(5)[0].flatten().tolist()) for rank in ranks)
    assert max(first) < 500 <= min(second)  # each rank reads only its own half of the tokens


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stream_order_does_not_depend_on_workers_or_restarts(num_workers: int) -> None:
    reference = RandomWindowBatches(TOKENS, block_size=8, batch_size=4, seed=0)
    resumed = RandomWindowBatches(TOKENS, block_size=8, batch_size=4, seed=0, start_step=10)
    loader = iter(DataLoader(resumed, batch_size=None, num_workers=num_workers))
    for step in range(10, 16):
        torch.testing.assert_close(next(loader)[0], reference.batch(step)[0])


def test_validation_windows_are_fixed_and_cover_the_split() -> None:
    windows = SequentialWindows(TOKENS, block_size=10)
    assert len(windows) == 99
    inputs, targets = windows[3]
    assert inputs.tolist() == list(range(30, 40))
    assert targets.tolist() == list(range(31, 41))
    assert len(SequentialWindows(TOKENS, block_size=10, max_windows=5)) == 5


def test_split_is_90_10_and_tokenizer_covers_both(corpus: Path) -> None:
    data = TextDataModule(path=str(corpus), block_size=16)
    text = corpus.read_text()
    train, val = data.split("train"), data.split("val")
    assert len(train) == int(len(text) * 0.9)
    assert len(train) + len(val) == len(text)
    assert data.tokenizer.decode(val.tolist()) == text[int(len(text) * 0.9) :]
    assert data.vocab_size == len(set(text))
    assert train.dtype == np.uint16


def test_token_cache_is_reused(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    TextDataModule(path=str(corpus)).prepare()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(text_module, "build_splits", fail)
    data = TextDataModule(path=str(corpus))
    data.prepare()
    assert len(data.split("train")) > 0


def test_token_cache_follows_the_corpus(corpus: Path) -> None:
    first = TextDataModule(path=str(corpus))
    first.prepare()
    corpus.write_text(corpus.read_text() + "A brand new line of text!\n")
    second = TextDataModule(path=str(corpus))
    assert len(second.split("train")) > len(first.split("train"))


def test_source_order_explicit_then_data_dir_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def place(folder: Path, text: str) -> Path:
        path = folder / "tinyshakespeare" / "input.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text * 200)
        return path

    cached = place(tmp_path / "cache", "from the cache\n")
    assert "from the cache" in decoded_train(TinyShakespeare(block_size=8))
    monkeypatch.setenv("MINIGPT_DATA_DIR", str(tmp_path / "data"))
    place(tmp_path / "data", "from the data dir\n")
    assert "from the data dir" in decoded_train(TinyShakespeare(block_size=8))
    explicit = tmp_path / "mine.txt"
    explicit.write_text("an explicit path\n" * 200)
    assert "an explicit path" in decoded_train(TinyShakespeare(path=str(explicit), block_size=8))
    assert cached.exists()


def decoded_train(data: TextDataModule) -> str:
    data.prepare()
    return data.tokenizer.decode(data.split("train")[:40].tolist())


def test_offline_without_a_copy_names_the_three_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(MinigptError) as error:
        TinyShakespeare().prepare()
    message = str(error.value)
    assert "\n" not in message
    assert "could not download" in message and "network is unreachable" in message
    assert "data.path" in message and "MINIGPT_DATA_DIR" in message and "tinyshakespeare/input.txt" in message
    assert not list((Path(os.environ["MINIGPT_CACHE_DIR"]) / "tinyshakespeare").glob("*"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"  \n\n ", "is empty"),
        (b"short text", "fewer than block_size \\+ 1 = 65"),
        (b"caf\xe9 au lait " * 50, "is not UTF-8 text \\(bad byte 0xe9 at offset 3, line 1\\)"),
    ],
)
def test_bad_corpus_files_get_one_line_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MinigptError, match=message) as error:
        TextDataModule(path=str(path), block_size=64).prepare()
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_directory_as_corpus_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MinigptError, match="is not a file"):
        TextDataModule(path=str(tmp_path)).prepare()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_corpus_is_refused(corpus: Path) -> None:
    corpus.chmod(0)
    with pytest.raises(MinigptError, match="is not readable"):
        TextDataModule(path=str(corpus)).prepare()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_size": 0}, "data.block_size"),
        ({"batch_size": -1}, "data.batch_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_impossible_data_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(MinigptError, match=message):
        TextDataModule(path="unused.txt", **kwargs)


@pytest.mark.skipif(not (SHARED_DATA / "tinyshakespeare" / "input.txt").is_file(), reason="no shared data here")
def test_real_tiny_shakespeare_from_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIGPT_DATA_DIR", str(SHARED_DATA))
    data = TinyShakespeare(block_size=256)
    # nanoGPT's shakespeare_char figures: 65 characters, 1,003,854 train and 111,540 val tokens.
    assert data.vocab_size == 65
    assert (len(data.split("train")), len(data.split("val"))) == (1_003_854, 111_540)
    assert data.tokenizer.decode(data.split("train")[:14].tolist()) == "First Citizen:"
