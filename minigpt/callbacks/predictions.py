"""`minigpt predict`'s answers, written to a JSONL file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


class PredictionsFile(BasePredictionWriter):
    """Writes `minigpt predict`'s answers to a JSONL file, one object per prompt, in prompt order.

    Args:
        path: The file to write (replaced if it exists).
    """

    def __init__(self, path: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self._file: Any = None

    def _part(self, trainer: Trainer) -> Path:
        # Each rank writes its own part; rank 0 joins them in prompt order at the end.
        return (
            self.path
            if trainer.world_size == 1
            else self.path.with_name(f".{self.path.name}.rank{trainer.global_rank}")
        )

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._part(trainer).open("w", encoding="utf-8")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        for record in prediction:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._file.close()
        if trainer.world_size > 1:
            trainer.strategy.barrier()
            if trainer.is_global_zero:
                parts = [self.path.with_name(f".{self.path.name}.rank{rank}") for rank in range(trainer.world_size)]
                records = [json.loads(line) for part in parts for line in part.read_text(encoding="utf-8").splitlines()]
                unique = {record["index"]: record for record in records}  # a sampler may pad with repeats
                self.path.write_text("".join(json.dumps(unique[i], ensure_ascii=False) + "\n" for i in sorted(unique)))
                for part in parts:
                    part.unlink()
        if trainer.is_global_zero:
            print(f"minigpt: answers written to {self.path}", file=sys.stderr)
