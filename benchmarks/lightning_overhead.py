"""Training throughput of `minigpt fit` (Lightning) against a plain PyTorch loop.

Both train the same model on the same batches with the same optimizer, schedule and clipping;
the runs alternate so drifts in machine load hit both alike. Prints tokens/s and the ratio.

    python benchmarks/lightning_overhead.py --steps 300 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch

from minigpt.data import TinyShakespeare
from minigpt.model import GPT, GPTConfig
from minigpt.module import LanguageModel
from minigpt.optim import adamw_groups, warmup_cosine

SHAPE = dict(n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)  # configs/pretrain-small.yaml


class StepTimer(L.Callback):
    """Wall time of training batches `skip` .. end, leaving out warm-up steps."""

    def __init__(self, skip: int) -> None:
        self.skip = skip
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.skip:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, *args: object) -> None:
        self.end = time.perf_counter()


def lightning_run(data: TinyShakespeare, steps: int, skip: int) -> float:
    torch.manual_seed(0)
    module = LanguageModel(gpt=GPTConfig(**SHAPE))
    timer = StepTimer(skip)
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        log_every_n_steps=50,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)
    return (steps - skip) * data.batch_size * data.block_size / (timer.end - timer.start)


def plain_run(data: TinyShakespeare, steps: int, skip: int) -> float:
    torch.manual_seed(0)
    data.setup("fit")
    assert data.tokenizer is not None
    model = GPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=data.block_size, **SHAPE))
    groups = adamw_groups(model.parameter_roles(), weight_decay=0.1)
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, 100, steps, 0.1))
    batches = iter(data.train_dataloader())
    model.train()
    start = 0.0
    for step in range(steps):
        if step == skip:
            start = time.perf_counter()
        inputs, targets = next(batches)
        loss = LanguageModel.loss(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    return (steps - skip) * data.batch_size * data.block_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip", type=int, default=20, help="warm-up steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    data = TinyShakespeare(block_size=64, batch_size=12)
    plain, lightning = [], []
    for _ in range(options.repeats):
        plain.append(plain_run(data, options.steps, options.skip))
        lightning.append(lightning_run(data, options.steps, options.skip))
    p, lt = statistics.median(plain), statistics.median(lightning)
    print(f"threads={torch.get_num_threads()} steps={options.steps} repeats={options.repeats}")
    print(f"plain PyTorch loop : {p:9.0f} tokens/s  (runs: {', '.join(f'{x:.0f}' for x in plain)})")
    print(f"minigpt (Lightning): {lt:9.0f} tokens/s  (runs: {', '.join(f'{x:.0f}' for x in lightning)})")
    print(f"Lightning / plain  : {lt / p:.3f}  (overhead {100 * (1 - lt / p):.1f}%)")


if __name__ == "__main__":
    main()
