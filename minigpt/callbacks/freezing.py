"""Layer freezing for fine-tunes, on Lightning's BaseFinetuning, chosen in YAML.

    trainer:
      callbacks:
        - class_path: minigpt.callbacks.freezing.FreezeLayers
          init_args:
            parts: [attention]

Part names: `embeddings` (token and position embeddings), `attention` (every block's
attention), `mlp` (every block's MLP), `blocks` (all blocks), `blocks[N]` (block N),
`blocks[:N]` (the first N blocks) and `all_but_head` (everything except the final LayerNorm
and the head). The head's matrix is the token embedding (tied weights): freezing `embeddings`
freezes the head too, and `all_but_head` trains the token embedding as the head.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn

from minigpt.errors import MinigptError
from minigpt.lora import adapted_layers
from minigpt.model import GPT
from minigpt.module import LanguageModel


def positions(model: GPT) -> list[nn.Module]:
    """The learned position table, if the model has one."""
    return [model.transformer["wpe"]] if "wpe" in model.transformer else []


# What each part name stands for; `blocks[N]` and `blocks[:N]` are read by `select_modules`.
PARTS: dict[str, Callable[[GPT], list[nn.Module]]] = {
    "embeddings": lambda model: [model.transformer.wte, *positions(model)],
    "attention": lambda model: [block.attn for block in model.transformer.h],
    "mlp": lambda model: [block.mlp for block in model.transformer.h],
    "blocks": lambda model: list(model.transformer.h),
    "all_but_head": lambda model: [*positions(model), *model.transformer.h],
}
BLOCK_INDEX = re.compile(r"^blocks\[(:?)(\d+)\]$")
PART_NAMES = (*PARTS, "blocks[N]", "blocks[:N]")


def gpt_of(pl_module: LightningModule) -> GPT:
    # Lightning's BaseFinetuning freezes in `setup`, before the module builds its network in
    # `configure_model` (which may be called early: it is idempotent).
    configure = getattr(pl_module, "configure_model", None)
    if getattr(pl_module, "model", None) is None and configure is not None:
        configure()
    model = getattr(pl_module, "model", None)
    if not isinstance(model, GPT):
        raise MinigptError(f"layer freezing needs a GPT (model.arch: gpt), not {type(model).__name__}")
    return model


def select_modules(model: GPT, part: str) -> list[nn.Module]:
    """The modules a part name stands for, with a one-line error for a name the model lacks."""
    if part in PARTS:
        return PARTS[part](model)
    match = BLOCK_INDEX.match(part)
    if match is None:
        raise MinigptError(f"unknown layer part {part!r} to freeze; use any of {', '.join(PART_NAMES)}")
    blocks: list[nn.Module] = list(model.transformer.h)
    first_n, index = match.group(1) == ":", int(match.group(2))
    if first_n and 1 <= index <= len(blocks):
        return blocks[:index]
    if not first_n and index < len(blocks):
        return [blocks[index]]
    raise MinigptError(
        f"layer part {part!r} names blocks that do not exist: the model has {len(blocks)} "
        f"(blocks[0] to blocks[{len(blocks) - 1}])"
    )


def adapter_in(module: nn.Module, adapted: Mapping[str, nn.Module]) -> bool:
    """Whether `module` holds one of the `adapted` layers."""
    held = {id(layer) for layer in adapted.values()}
    return any(id(inner) in held for inner in module.modules())


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def log_trainable(trainer: Trainer, pl_module: LightningModule) -> None:
    """Trainable parameter count to the console and to TensorBoard (`train/trainable_params`)."""
    trainable, total = count_trainable(pl_module), sum(p.numel() for p in pl_module.parameters())
    if trainer.is_global_zero:
        print(f"trainable parameters: {trainable:,} of {total:,} at step {trainer.global_step}")
    for logger in trainer.loggers:
        logger.log_metrics({"train/trainable_params": trainable}, step=trainer.global_step)


class FreezeLayers(BaseFinetuning):
    """Keeps the named parts of the GPT frozen for the whole run (see the module docstring).

    Args:
        parts: Part names to freeze: embeddings, attention, mlp, blocks, blocks[N], blocks[:N], all_but_head.
    """

    def __init__(self, parts: list[str]) -> None:
        super().__init__()
        if not parts:
            raise MinigptError("FreezeLayers.parts is empty; name at least one part, e.g. [attention]")
        self.parts = list(parts)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        model = gpt_of(pl_module)
        modules = {part: select_modules(model, part) for part in self.parts}
        adapted = adapted_layers(model)
        if adapted:
            # LoRA freezes every base weight itself and trains its adapters: a part that holds
            # adapters would stop them, and the others are frozen already.
            holding = [part for part, found in modules.items() if any(adapter_in(module, adapted) for module in found)]
            if holding:
                raise MinigptError(
                    f"FreezeLayers parts {holding} hold the LoRA adapters of model.lora.targets, which LoRA trains "
                    "(and it freezes every base weight itself); remove the freezing callback or those targets"
                )
        # No part covers the final LayerNorm, so something always trains.
        self.freeze([module for found in modules.values() for module in found])

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        """Nothing unfreezes: the parts stay frozen to the end."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_trainable(trainer, pl_module)


class GradualUnfreezing(BaseFinetuning):
    """Trains the head first, then unfreezes one more block every `every` steps (or epochs).

    Blocks unfreeze from the last (nearest the head) to the first, then the position embeddings,
    as in ULMFiT. Each newly trainable block joins the optimizer with peak learning rate `lr`
    and follows the run's warmup and cosine schedule from where it stands.

    Args:
        every: Steps (or epochs) between two unfreezings.
        interval: "step" or "epoch".
        lr: Peak learning rate of the unfrozen blocks (default: the run's, model.learning_rate or model.muon_lr).
    """

    def __init__(self, every: int = 100, interval: Literal["step", "epoch"] = "step", lr: float | None = None) -> None:
        super().__init__()
        if every < 1:
            raise MinigptError(f"GradualUnfreezing.every must be 1 or more, got {every}")
        if interval not in ("step", "epoch"):
            raise MinigptError(f"GradualUnfreezing.interval must be step or epoch, got {interval!r}")
        self.every = every
        self.interval = interval
        self.lr = lr
        self.unfrozen = 0

    def _stages(self, model: GPT) -> list[nn.Module]:
        return [*reversed(model.transformer.h), *positions(model)]

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        model = gpt_of(pl_module)
        if adapted_layers(model):
            raise MinigptError(
                "GradualUnfreezing unfreezes base weights, which model.lora keeps frozen; use one of them"
            )
        self.freeze(self._stages(model))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Called when a run resumes, before Lightning restores the optimizer, whose saved param
        # groups (one pair per block unfrozen so far) no freshly configured optimizer matches.
        raise MinigptError("resuming a run that uses GradualUnfreezing is not supported; start the fine-tune again")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_trainable(trainer, pl_module)

    def _unfreeze_next(self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer) -> None:
        stages = self._stages(gpt_of(pl_module))
        if self.unfrozen >= len(stages):
            return
        stage = stages[self.unfrozen]
        self.unfrozen += 1
        self.make_trainable(stage)
        # Lightning types the hooks' module as any LightningModule; this one is minigpt's.
        for group in cast(LanguageModel, pl_module).optimizer_groups(within=stage):
            lr = self.lr if self.lr is not None else group["lr"]
            optimizer.add_param_group({**group, "lr": lr, "initial_lr": lr})
            follow_schedule(trainer, optimizer, lr)
        log_trainable(trainer, pl_module)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.interval == "step" and step > 0 and step % self.every == 0:
            self._unfreeze_next(trainer, pl_module, trainer.optimizers[0])

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if self.interval == "epoch" and epoch > 0 and epoch % self.every == 0:
            self._unfreeze_next(pl_module.trainer, pl_module, optimizer)


def follow_schedule(trainer: Trainer, optimizer: torch.optim.Optimizer, peak_lr: float) -> None:
    """Puts the optimizer's newest param group on the run's LambdaLR schedule at its current step.

    A LambdaLR keeps one multiplier function and base learning rate per group it was built with;
    a group added later would otherwise keep a constant learning rate.
    """
    group = optimizer.param_groups[-1]
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if scheduler.optimizer is optimizer and isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            multiplier = scheduler.lr_lambdas[0]
            scheduler.lr_lambdas.append(multiplier)
            scheduler.base_lrs.append(peak_lr)
            group["lr"] = peak_lr * multiplier(scheduler.last_epoch)
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
