"""Prompts for `minigpt predict`: a file of prompts, completed in batches through Lightning's
predict loop (so on GPUs and several devices like `fit`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import DataLoader

from minigpt.corpus.sources import check_readable_file, decode_text
from minigpt.data.base import TokenDataModule
from minigpt.errors import MinigptError
from minigpt.generation import Completion, TextGenerator
from minigpt.pretrained import load_config, load_tokenizer
from minigpt.sampling import DEFAULT_SAMPLING, Sampling


class PromptBatch:
    """Prompts to complete together, with how: what `LanguageModel.predict_step` is given.

    A plain class on purpose: Lightning moves tensors, lists and dataclasses in a batch to the
    device, and there is nothing here to move.
    """

    def __init__(self, indices: list[int], prompts: list[str], settings: Prompts) -> None:
        self.indices = indices
        self.prompts = prompts
        self.settings = settings

    @classmethod
    def of(cls, items: list[tuple[int, str]], settings: Prompts) -> PromptBatch:
        return cls([index for index, _ in items], [prompt for _, prompt in items], settings)

    def complete(self, generator: TextGenerator) -> list[dict]:
        settings = self.settings
        seeds = None if settings.first_seed is None else [settings.first_seed + index for index in self.indices]
        completions: list[Completion] = generator.complete(
            self.prompts,
            settings.max_new_tokens,
            settings.sampling,
            stop=settings.stop,
            seeds=seeds,
            wrap=settings.wrap,
        )
        return [
            {"index": index, "prompt": c.prompt, "completion": c.text, "tokens": c.tokens, "seed": c.seed}
            for index, c in zip(self.indices, completions, strict=True)
        ]


def read_prompts(path: Path) -> list[str]:
    """One prompt per line of a text file, or the `prompt` of each object of a JSONL file."""
    text = decode_text(path.read_bytes(), path, key="data.prompts")
    if path.suffix != ".jsonl":
        return [line for line in text.splitlines() if line.strip()]
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise MinigptError(f"data.prompts: {path} line {number} is not valid JSON ({error.msg})") from None
        prompt = record.get("prompt") if isinstance(record, dict) else record
        if not isinstance(prompt, str) or not prompt:
            raise MinigptError(
                f'data.prompts: {path} line {number} has no prompt; write {{"prompt": "..."}} or a JSON string per line'
            )
        prompts.append(prompt)
    return prompts


class Prompts(TokenDataModule):
    """Prompts completed in batches by `minigpt predict --ckpt_path X --data.prompts FILE`.

    Answers go, one JSON object per prompt (prompt, completion, tokens, seed), to the file of
    `--predictions.path`. A batch is left-padded to its longest prompt, so batching does not
    change what a prompt gets.

    Args:
        prompts: A text file with one prompt per line, or a JSONL file of {"prompt": "..."}
            objects (where a prompt may hold line breaks).
        batch_size: Prompts completed together.
        max_new_tokens: Most tokens to generate for each prompt.
        sampling: How tokens are picked: temperature (0 is greedy), top_k, top_p,
            repetition_penalty, as `minigpt generate` takes them.
        stop: End each answer before any of these texts.
        seed: Prompt number i (from 0, in file order) samples with seed + i, whatever batch or
            device it lands on (unset: random).
        wrap: Wrap prompts in the checkpoint's prompt style when it has one (instruction-tuned).
        num_workers: Dataloader worker processes.
        tokenizer_from: The checkpoint, GPT-2 directory or hub name whose tokenizer and context
            the prompts use (set from --ckpt_path).
    """

    def __init__(
        self,
        prompts: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        sampling: Sampling = DEFAULT_SAMPLING,
        stop: Sequence[str] = (),
        seed: int | None = None,
        wrap: bool = True,
        num_workers: int = 0,
        tokenizer_from: str | None = None,
    ) -> None:
        # The loader's own seed is unused (prompts are served in order): 0.
        super().__init__(prompts, None, batch_size, None, num_workers, 0, tokenizer_from)
        if max_new_tokens < 0:
            raise MinigptError(f"data.max_new_tokens must be 0 or more, got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self.stop = list(stop)
        self.first_seed = seed
        self.wrap = wrap
        self._prompts: list[str] | None = None

    def prepare(self) -> None:
        if self._prompts is not None:
            return
        if self.path is None:
            raise MinigptError("data.prompts is not set; pass --data.prompts FILE (one prompt per line, or JSONL)")
        path = check_readable_file(Path(self.path), "data.prompts")
        prompts = read_prompts(path)
        if not prompts:
            raise MinigptError(f"data.prompts: {path} holds no prompt")
        if self.tokenizer_from is None:
            raise MinigptError("minigpt predict needs the model to answer with: pass --ckpt_path CHECKPOINT")
        # The checkpoint's own tokenizer, not grown: the weights have rows for its tokens only.
        self.tokenizer = load_tokenizer(self.tokenizer_from, key="--ckpt_path")
        self._block_size = load_config(self.tokenizer_from, key="--ckpt_path").block_size
        self._prompts = prompts

    @property
    def block_size(self) -> int:
        """The checkpoint's context: the model the prompts are completed with is built with it."""
        self.prepare()
        assert self._block_size is not None  # a checkpoint's config has its sizes
        return self._block_size

    @block_size.setter
    def block_size(self, value: int | None) -> None:
        self._block_size = value

    def predict_dataloader(self) -> DataLoader:
        self.prepare()
        assert self._prompts is not None
        collate = functools.partial(PromptBatch.of, settings=self)
        return self.loader(list(enumerate(self._prompts)), self.batch_size, collate_fn=collate)
