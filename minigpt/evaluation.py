"""Generation-based evaluation of instruction tuning: answer held-out instructions, score them."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics.text.rouge import ROUGEScore

from minigpt.errors import MinigptError
from minigpt.generation import Sampling, generate_texts


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

    def answer(self, pl_module: LightningModule, datamodule: Any) -> list[tuple[str, str, str]]:
        """(prompt, generated, reference) for the first held-out records whose prompt fits the context."""
        style, tokenizer = datamodule.style, datamodule.tokenizer
        block_size = pl_module.model.config.block_size
        triples = []
        for record in datamodule.val_records:
            if len(triples) == self.num_examples:
                break
            prompt = style.format(record.instruction, record.context)
            if len(tokenizer.encode(prompt)) >= block_size:
                continue
            (answer,) = generate_texts(
                pl_module.model, tokenizer, prompt, self.max_new_tokens, Sampling(temperature=0), style.stop_sequences
            )
            triples.append((prompt, answer.strip(), record.response))
        return triples

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if trainer.sanity_checking or not getattr(datamodule, "val_records", None):
            return
        triples = self.answer(pl_module, datamodule)
        if not triples:
            return
        rouge = ROUGEScore(rouge_keys="rougeL")
        score = rouge([answer for _, answer, _ in triples], [reference for _, _, reference in triples])
        pl_module.log("val/rougeL", score["rougeL_fmeasure"].to(pl_module.device))
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
