"""Callbacks that generate at each validation: a text sample for TensorBoard, and ROUGE-L of
answers to held-out instructions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics.text.rouge import ROUGEScore

from minigpt.data.instruct import InstructionRecord
from minigpt.errors import MinigptError
from minigpt.generation import TextGenerator, context_length
from minigpt.prompts import PromptStyle
from minigpt.sampling import DEFAULT_SAMPLING, GREEDY
from minigpt.tokenizers import Tokenizer


def answer_records(
    model: nn.Module,
    tokenizer: Tokenizer,
    style: PromptStyle,
    records: Iterable[InstructionRecord],
    count: int,
    max_new_tokens: int,
) -> list[tuple[str, str, str]]:
    """(prompt, greedy answer, reference) for the first `count` records whose prompt fits the context."""
    block_size = context_length(model)
    generator = TextGenerator(model, tokenizer)
    triples: list[tuple[str, str, str]] = []
    for record in records:
        if len(triples) == count:
            break
        prompt = style.format(record.instruction, record.context)
        if len(tokenizer.encode(prompt)) >= block_size:
            continue
        (answer,) = generator.generate(prompt, max_new_tokens, GREEDY, stop=style.stop_sequences)
        triples.append((prompt, answer.strip(), record.response))
    return triples


def rouge_l(triples: list[tuple[str, str, str]]) -> float:
    """Mean ROUGE-L F-measure of the answers against the references."""
    score = ROUGEScore(rouge_keys="rougeL")([answer for _, answer, _ in triples], [ref for _, _, ref in triples])
    return float(score["rougeL_fmeasure"])


def indented(text: str) -> str:
    """Text as a markdown code block, so TensorBoard keeps its line breaks."""
    return "\n".join("    " + line for line in text.splitlines() or [""])


def validation_step(trainer: Trainer) -> int:
    """The step Lightning logs this validation's scalars at, so that text sits beside them: inside
    fit, the index (from 0) of the step just taken."""
    return max(trainer.global_step - 1, 0) if trainer.state.fn == TrainerFn.FITTING else trainer.global_step


class TextSample(Callback):
    """After each validation, logs a sample continuing `prompt` to TensorBoard (TEXT › sample).

    Args:
        prompt: The text the sample continues.
        tokens: Tokens to generate (0 turns the sample off).
    """

    def __init__(self, prompt: str = "\n", tokens: int = 200) -> None:
        if tokens < 0:
            raise MinigptError(f"sample.tokens must be 0 or more, got {tokens}")
        self.prompt = prompt
        self.tokens = tokens

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        tokenizer = getattr(pl_module, "tokenizer", None)
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.sanity_checking or not trainer.is_global_zero or not loggers or not self.tokens or tokenizer is None:
            return
        try:
            tokenizer.encode(self.prompt)
        except MinigptError:
            rank_zero_warn(f"sample.prompt {self.prompt!r} is outside the vocabulary; no sample is logged")
            return
        generator = TextGenerator(cast(nn.Module, pl_module.model), tokenizer)
        text = generator.generate(self.prompt, self.tokens, DEFAULT_SAMPLING, seed=0, wrap=False)[0]
        for logger in loggers:
            logger.experiment.add_text("sample", indented(self.prompt + text), global_step=validation_step(trainer))


class InstructionEvaluation(Callback):
    """At each validation, answer held-out instructions greedily and score them with ROUGE-L.

    Logs `val/rougeL` (F-measure of the longest common word subsequence between the generated
    and the reference responses, 0 to 1) and, to TensorBoard, a few instruction / response /
    reference triples. Works with minigpt's instruction data modules (their `val_records`).

    Args:
        num_examples: Held-out records answered at each validation (the first of the split).
        max_new_tokens: Longest answer in tokens.
        log_examples: How many of them are shown in TensorBoard.
    """

    def __init__(self, num_examples: int = 16, max_new_tokens: int = 128, log_examples: int = 4) -> None:
        if num_examples < 1 or max_new_tokens < 1 or log_examples < 0:
            raise MinigptError(
                "InstructionEvaluation needs num_examples >= 1, max_new_tokens >= 1 and log_examples >= 0"
            )
        self.num_examples = num_examples
        self.max_new_tokens = max_new_tokens
        self.log_examples = log_examples

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if trainer.sanity_checking or datamodule is None or not getattr(datamodule, "val_records", None):
            return
        triples = answer_records(
            cast(nn.Module, pl_module.model),
            datamodule.tokenizer,
            datamodule.style,
            datamodule.val_records,
            self.num_examples,
            self.max_new_tokens,
        )
        if not triples:
            return
        pl_module.log("val/rougeL", torch.tensor(rouge_l(triples), device=pl_module.device))
        if trainer.is_global_zero and self.log_examples:
            self._log_text(trainer, triples[: self.log_examples], validation_step(trainer))

    @staticmethod
    def _log_text(trainer: Trainer, triples: list[tuple[str, str, str]], step: int) -> None:
        parts = [
            f"**prompt**\n\n{indented(prompt)}\n\n**generated**\n\n{indented(answer)}\n\n"
            f"**reference**\n\n{indented(reference)}"
            for prompt, answer, reference in triples
        ]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("instruction_examples", "\n\n---\n\n".join(parts), global_step=step)
