from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import LINES, SHARED_DATA
from torch.utils.data import DataLoader

from minigpt.corpus import streaming
from minigpt.corpus.pool import tokenizing_pool
from minigpt.corpus.streaming import TextFile
from minigpt.data import TextDataModule, WikiText103
from minigpt.data import text as text_module
from minigpt.data.windows import EpochWindowBatches
from minigpt.errors import MinigptError
from minigpt.tokenizers import BPETokenizer, CharTokenizer, TokenizerSpec

BPE = TokenizerSpec(kind="bpe", vocab_size=300)


def article(title: str, lines: int) -> str:
    body = "".join(f" {LINES[i % len(LINES)].replace(chr(10), ' ')}\n \n" for i in range(lines))
    return f" \n = {title} = \n \n{body}"


@pytest.fixture
def wikitext(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A WikiText-style folder; chunks of 4 kB so even this small corpus streams in many pieces."""
    monkeypatch.setattr(streaming, "CHUNK_BYTES", 4096)
    folder = tmp_path / "wikitext"
    folder.mkdir()
    (folder / "wiki.train.raw").write_text("".join(article(f"Train {i}", 40) for i in range(30)))
    (folder / "wiki.valid.raw").write_text(article("Valid", 60))
    (folder / "wiki.test.raw").write_text(article("Test", 60))
    return folder


def test_file_chunks_are_line_aligned_and_lossless(wikitext: Path) -> None:
    path = wikitext / "wiki.train.raw"
    chunks = list(TextFile(path).chunks())
    assert len(chunks) > 10
    assert all(chunk.endswith("\n") for chunk in chunks)
    assert "".join(chunks) == path.read_text()


def test_streamed_cache_matches_the_text(wikitext: Path) -> None:
    data = WikiText103(path=str(wikitext), tokenizer=BPE, block_size=16, tokenize_workers=0)
    data.prepare()
    for split, name in (("train", "wiki.train.raw"), ("val", "wiki.valid.raw"), ("test", "wiki.test.raw")):
        assert data.tokenizer.decode(data.split(split).tolist()) == (wikitext / name).read_text()
    assert data.vocab_size == 300 and data.split("train").dtype == np.uint16


@pytest.mark.slow
def test_worker_processes_build_the_same_cache(wikitext: Path, tmp_path: Path) -> None:
    alone = WikiText103(path=str(wikitext), tokenizer=BPE, tokenize_workers=0, cache_dir=str(tmp_path / "a"))
    pooled = WikiText103(path=str(wikitext), tokenizer=BPE, tokenize_workers=2, cache_dir=str(tmp_path / "b"))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(alone.split(split), pooled.split(split))


def test_cache_and_tokenizer_are_reused(wikitext: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = WikiText103(path=str(wikitext), tokenizer=BPE, block_size=16)
    first.prepare()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt instead of reused")

    monkeypatch.setattr(text_module, "build_splits", fail)
    monkeypatch.setattr(BPETokenizer, "train", fail)
    second = WikiText103(path=str(wikitext), tokenizer=BPE, block_size=16)
    np.testing.assert_array_equal(first.split("train"), second.split("train"))


def test_a_changed_tokenizer_gets_a_new_cache(wikitext: Path, tmp_path: Path) -> None:
    small = WikiText103(path=str(wikitext), tokenizer=BPE)
    small.prepare()
    larger = WikiText103(path=str(wikitext), tokenizer=TokenizerSpec(kind="bpe", vocab_size=320))
    assert len(larger.split("train")) < len(small.split("train"))
    regex = WikiText103(path=str(wikitext), tokenizer=TokenizerSpec(kind="regex-bpe", vocab_size=300))
    regex.prepare()
    assert regex.tokenizer.kind == "regex-bpe"
    entries = [p for p in (tmp_path / "cache" / "tokens").iterdir() if p.name != "tokenizers"]
    assert len(entries) == 3


def test_tokenizer_never_learns_from_validation_text(corpus: Path) -> None:
    base = corpus.read_text()
    corpus.write_text(base + ("zyzzyva quokka " * 10_000)[: len(base)])
    spec = TokenizerSpec(kind="regex-bpe", vocab_size=400)
    data = TextDataModule(path=str(corpus), tokenizer=spec, val_fraction=0.5)
    data.prepare()
    text = corpus.read_text()
    cut = len(base)
    assert "zyzzyva" in text[cut:] and "zyzzyva" not in text[:cut]
    vocabulary = data.tokenizer.backend.get_vocab()
    assert not [token for token in vocabulary if "zz" in token or "quo" in token]
    assert data.tokenizer.decode(data.split("val").tolist()) == text[cut:]


def test_char_vocabulary_covers_every_split(wikitext: Path) -> None:
    (wikitext / "wiki.test.raw").write_text(article("Test", 60) + " Ωμέγα only in test\n")
    data = WikiText103(path=str(wikitext), tokenizer=TokenizerSpec(kind="char"), block_size=16)
    data.prepare()
    assert isinstance(data.tokenizer, CharTokenizer)
    assert "Ω" in data.tokenizer.chars


def test_epoch_batches_are_disjoint_across_2_ranks_and_2_workers() -> None:
    tokens = np.arange(20_000, dtype=np.uint16)
    block, batch = 16, 4
    seen: dict[tuple[int, int], list[int]] = {}
    for rank in range(2):
        dataset = EpochWindowBatches(tokens, block, batch, seed=3, rank=rank, world_size=2)
        loader = iter(DataLoader(dataset, batch_size=None, num_workers=2))
        for step in range(dataset.batches_per_epoch):
            inputs, targets = next(loader)
            assert (targets == inputs + 1).all()
            # DataLoader takes batches from its workers in turn: step s came from worker s % 2.
            seen.setdefault((rank, step % 2), []).extend(inputs[:, 0].tolist())
    parts = [set(starts) for starts in seen.values()]
    assert len(parts) == 4 and all(parts)
    assert sum(len(p) for p in parts) == len(set().union(*parts))  # no window read twice
    # Together they read every window of the epoch (up to the batch remainder).
    windows = (len(tokens) - block) // block
    assert len(set().union(*parts)) >= windows - 2 * batch * 2


def test_epoch_batches_depend_only_on_the_step() -> None:
    tokens = np.arange(5_000, dtype=np.uint16)
    dataset = EpochWindowBatches(tokens, 8, 4, seed=0)
    resumed = iter(DataLoader(EpochWindowBatches(tokens, 8, 4, seed=0, start_step=7), batch_size=None, num_workers=2))
    for step in range(7, 12):
        np.testing.assert_array_equal(next(resumed)[0], dataset.batch(step)[0])
    # A new epoch reshuffles and moves the window boundaries.
    first, second = dataset.window_starts(0), dataset.window_starts(1)
    assert not np.array_equal(first, second)


def test_wikitext_train_loader_splits_ranks(wikitext: Path) -> None:
    starts = []
    for rank in range(2):
        data = WikiText103(path=str(wikitext), tokenizer=BPE, block_size=16, batch_size=4)
        data.trainer = SimpleNamespace(global_step=0, global_rank=rank, world_size=2)
        inputs, _ = next(iter(data.train_dataloader()))
        starts.append({tuple(row) for row in inputs.tolist()})
    assert not starts[0] & starts[1]


def test_too_little_text_for_one_batch_per_rank() -> None:
    with pytest.raises(MinigptError, match="too few for one batch of 4 windows of 9 tokens on each of 8 ranks"):
        EpochWindowBatches(np.arange(100, dtype=np.uint16), 8, 4, seed=0, world_size=8)


def test_missing_split_file_is_named(wikitext: Path) -> None:
    (wikitext / "wiki.train.raw").unlink()
    with pytest.raises(MinigptError, match=r"has no wiki\.train\.raw; wikitext needs wiki\.train\.raw") as error:
        WikiText103(path=str(wikitext)).prepare()
    assert "\n" not in str(error.value)


def test_split_files_can_be_renamed(wikitext: Path) -> None:
    (wikitext / "wiki.train.raw").unlink()
    data = WikiText103(path=str(wikitext), train_file="wiki.valid.raw", val_file="wiki.test.raw", tokenizer=BPE)
    data.prepare()
    assert data.tokenizer.decode(data.split("train").tolist()) == (wikitext / "wiki.valid.raw").read_text()


def test_folder_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(MinigptError, match="is not a folder"):
        WikiText103(path=str(tmp_path / "nowhere")).prepare()


def test_non_utf8_byte_is_located_or_replaced(wikitext: Path) -> None:
    train = wikitext / "wiki.train.raw"
    good = train.read_bytes()
    train.write_bytes(good + b" caf\xe9\n")
    offset, line = len(good) + 4, good.count(b"\n") + 1
    with pytest.raises(MinigptError, match=rf"bad byte 0xe9 at offset {offset}, line {line}\); .*data.errors"):
        WikiText103(path=str(wikitext), tokenizer=BPE).prepare()
    data = WikiText103(path=str(wikitext), tokenizer=BPE, errors="replace")
    data.prepare()
    assert data.tokenizer.decode(data.split("train").tolist()).endswith(" caf\ufffd\n")


def test_offline_download_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'Salesforce/wikitext' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(MinigptError, match="could not download Salesforce/wikitext") as error:
        WikiText103().prepare()
    assert "\n" not in str(error.value) and "MINIGPT_DATA_DIR" in str(error.value)
    assert not list((Path(os.environ["MINIGPT_CACHE_DIR"]) / "wikitext").glob("*"))


def test_download_streams_rows_into_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def hub(name: str, config: str, split: str, streaming: bool) -> list[dict]:
        assert (name, config, streaming) == ("Salesforce/wikitext", "wikitext-103-raw-v1", True)
        return [{"text": line} for line in article(split, 80).splitlines(keepends=True)]

    monkeypatch.setattr(datasets, "load_dataset", hub)
    data = WikiText103(tokenizer=BPE, block_size=16)
    data.prepare()
    cached = Path(os.environ["MINIGPT_CACHE_DIR"]) / "wikitext"
    assert sorted(p.name for p in cached.iterdir()) == ["wiki.test.raw", "wiki.train.raw", "wiki.valid.raw"]
    assert data.tokenizer.decode(data.split("val").tolist()) == article("validation", 80)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "wikitext" / "wiki.valid.raw").is_file(), reason="no shared data here")
def test_real_wikitext_valid_as_train(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIGPT_DATA_DIR", str(SHARED_DATA))
    spec = TokenizerSpec(kind="regex-bpe", vocab_size=1024, pattern="gpt2")
    data = WikiText103(train_file="wiki.valid.raw", val_file="wiki.test.raw", tokenizer=spec, block_size=64)
    data.prepare()
    text = (SHARED_DATA / "wikitext" / "wiki.test.raw").read_text()
    val = data.split("val")
    assert data.tokenizer.decode(val.tolist()) == text
    assert int(data.tokenizer.token_char_lengths()[val].sum()) == len(text)


def test_other_local_ranks_wait_for_rank_0s_tokenizer(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TokenizerSpec(kind="bpe", vocab_size=300)
    reference = TextDataModule(path=str(corpus), tokenizer=spec)
    reference.prepare()
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(BPETokenizer, "train", lambda *a, **k: pytest.fail("rank 1 trained a tokenizer"))
    follower = TextDataModule(path=str(corpus), tokenizer=spec)
    follower.prepare()
    assert follower.tokenizer.to_json() == reference.tokenizer.to_json()


@pytest.mark.slow
def test_a_tokenizing_worker_that_dies_stops_the_build_in_one_line(tmp_path: Path) -> None:
    text = "".join(LINES) * 50
    tokenizer = CharTokenizer.from_text(text)
    with tokenizing_pool(tokenizer, workers=1) as pool:
        assert pool is not None
        pool.submit("ROMEO:", np.dtype(np.uint16)).result(timeout=60)  # the worker is up
        for worker in pool.executor._processes.values():
            worker.kill()  # as the out-of-memory killer would
            worker.join(timeout=60)
        source = streaming.InMemoryText("corpus.txt", text)
        with pytest.raises(MinigptError) as error:
            streaming.encode_to_file(source, tokenizer, tmp_path / "t.bin", np.dtype(np.uint16), pool, "tokenizing")
    assert str(error.value) == (
        "a tokenizing worker died while tokenizing corpus.txt for the token cache (out of memory?); "
        "set data.tokenize_workers lower, or 0 to tokenize in the training process"
    )
