"""Generation-based evaluation of instruction tuning: answer held-out instructions, score them."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics.text.rouge import ROUGEScore

from minigpt.data.instruct import InstructionRecord
from minigpt.errors import MinigptError
from minigpt.generation import Sampling, generate_texts
from minigpt.prompts import PromptStyle
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
    block_size = model.config.block_size
    triples = []
    for record in records:
        if len(triples) == count:
            break
        prompt = style.format(record.instruction, record.context)
        if len(tokenizer.encode(prompt)) >= block_size:
            continue
        (answer,) = generate_texts(
            model, tokenizer, prompt, max_new_tokens, Sampling(temperature=0), style.stop_sequences
        )
        triples.append((prompt, answer.strip(), record.response))
    return triples


def rouge_l(triples: list[tuple[str, str, str]]) -> float:
    """Mean ROUGE-L F-measure of the answers against the references."""
    score = ROUGEScore(rouge_keys="rougeL")([answer for _, answer, _ in triples], [ref for _, _, ref in triples])
    return float(score["rougeL_fmeasure"])


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
        if trainer.sanity_checking or not getattr(datamodule, "val_records", None):
            return
        triples = answer_records(
            pl_module.model,
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
            self._log_text(trainer, triples[: self.log_examples], pl_module.global_step)

    @staticmethod
    def _log_text(trainer: Trainer, triples: list[tuple[str, str, str]], step: int) -> None:
        # Indented blocks keep line breaks that TensorBoard's markdown would otherwise join.
        def block(text: str) -> str:
            return "\n".join("    " + line for line in text.splitlines() or [""])

        parts = [
            f"**prompt**\n\n{block(prompt)}\n\n**generated**\n\n{block(answer)}\n\n**reference**\n\n{block(reference)}"
            for prompt, answer, reference in triples
        ]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("instruction_examples", "\n\n---\n\n".join(parts), global_step=step)
