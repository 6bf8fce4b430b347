"""LanguageModel: the LightningModule that trains a minigpt network on next-token prediction."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import SumMetric
from torchmetrics.text import Perplexity

from minigpt.checkpoint import METADATA_KEY, metadata
from minigpt.constants import IGNORE_INDEX
from minigpt.errors import MinigptError
from minigpt.generation import TextGenerator
from minigpt.model import GPTConfig
from minigpt.optim import OPTIMIZERS, SCHEDULES, build_optimizer, optimizer_groups
from minigpt.pretrained import build_network
from minigpt.tokenizers import Tokenizer, tokenizer_from_json

ARCHITECTURE_FIELDS = tuple(field.name for field in fields(GPTConfig))


class LanguageModel(LightningModule):
    """Next-token training for a GPT or the bigram baseline.

    Architecture values left unset come from `preset` (see `minigpt.model.PRESETS`), then from
    GPTConfig's defaults. `vocab_size` and `block_size` are filled in from the data module.

    Args:
        arch: "gpt" or "bigram" (the baseline: a table of next-token logits).
        preset: Named GPT size (nano, micro, mini, shakespeare, gpt2, gpt2-medium).
        vocab_size: Tokens in the vocabulary; linked from data.vocab_size.
        block_size: Context length; linked from data.block_size.
        n_layer: Transformer blocks.
        n_head: Attention heads per block.
        n_embd: Width of the residual stream.
        dropout: Dropout probability in training.
        bias: Biases in linear layers and LayerNorms.
        gelu: "exact" (erf) or "tanh" (GPT-2's approximation; the gpt2 presets use it).
        position: "learned" position embeddings (GPT-2) or "rope" (rotary, no table).
        rope_base: Base of the rotary frequencies.
        norm: "layernorm" (GPT-2) or "rmsnorm".
        qk_norm: RMS-normalise each head's queries and keys before attention.
        mlp: "gelu" (GPT-2), "relu2" (relu squared) or "swiglu" (gated, three matrices).
        mlp_ratio: MLP width over n_embd (4 for GPT-2; swiglu keeps the parameter count of that
            width with 2/3 of it).
        tie_embeddings: The head is the token embedding's transpose (GPT-2), or a matrix of its own.
        zero_init_proj: Start the projections into the residual stream (and an untied head) at zero.
        logit_softcap: > 0 squashes logits into (-cap, cap) with tanh; 0 is off.
        (Unset options come from the preset, then from GPTConfig: GPT-2's layout. See
        configs/pretrain-small-modern.yaml and benchmarks/README.md for what each buys.)
        init_from: Start from these weights and this tokenizer: a minigpt .ckpt, a Hugging Face
            GPT-2 directory (config.json, model.safetensors, tokenizer.json) or a hub name such as
            gpt2. The architecture comes from it; a fine-tune config sets it through
            `finetune: true` and --ckpt_path. Training starts at step 0 with a fresh optimizer.
        optimizer: adamw (every parameter), or muon (Muon for the blocks' matrices, AdamW for the
            embeddings, head, gains and biases; minigpt.muon).
        learning_rate: Peak learning rate of AdamW.
        muon_lr: Peak learning rate of Muon's matrices (default: learning_rate).
        min_lr: Learning rate at the end of the decay.
        weight_decay: AdamW weight decay, applied to matrices and embeddings only.
        betas: AdamW betas.
        warmup_steps: Steps of linear warmup.
        lr_schedule: After the warmup: cosine or linear decay to min_lr, or constant (minigpt.optim.SCHEDULES).
        lr_decay_steps: Step at which the decay reaches min_lr (default: trainer.max_steps).
        compile: Compile the network with torch.compile (worth it on GPUs).
        on_nonfinite_loss: "stop" ends the run at a NaN/inf loss, before it reaches the weights,
            keeping the checkpoints already written; "skip" drops that batch and goes on.
    """

    def __init__(
        self,
        arch: Literal["gpt", "bigram"] = "gpt",
        preset: str | None = None,
        vocab_size: int | None = None,
        block_size: int | None = None,
        n_layer: int | None = None,
        n_head: int | None = None,
        n_embd: int | None = None,
        dropout: float | None = None,
        bias: bool | None = None,
        gelu: Literal["exact", "tanh"] | None = None,
        position: Literal["learned", "rope"] | None = None,
        rope_base: float | None = None,
        norm: Literal["layernorm", "rmsnorm"] | None = None,
        qk_norm: bool | None = None,
        mlp: Literal["gelu", "relu2", "swiglu"] | None = None,
        mlp_ratio: float | None = None,
        tie_embeddings: bool | None = None,
        zero_init_proj: bool | None = None,
        logit_softcap: float | None = None,
        init_from: str | None = None,
        optimizer: str = "adamw",
        learning_rate: float = 1e-3,
        muon_lr: float | None = None,
        min_lr: float = 1e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 100,
        lr_schedule: str = "cosine",
        lr_decay_steps: int | None = None,
        compile: bool = False,
        on_nonfinite_loss: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if min_lr > learning_rate:
            raise MinigptError(f"model.min_lr ({min_lr}) must not exceed model.learning_rate ({learning_rate})")
        if optimizer not in OPTIMIZERS:
            raise MinigptError(f"unknown model.optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if lr_schedule not in SCHEDULES:
            raise MinigptError(f"unknown model.lr_schedule {lr_schedule!r}; choose one of {', '.join(SCHEDULES)}")
        self.arch = arch
        given = {name: value for name, value in locals().items() if name in ARCHITECTURE_FIELDS}
        network = build_network(arch, preset, given, init_from)
        if network.summary:
            rank_zero_info(network.summary)
        self.model = network.model
        # The tokenizer the init_from weights were trained with: the data's must extend it.
        self.init_tokenizer: Tokenizer | None = network.tokenizer
        # Until a data module brings its own (possibly grown) copy in `setup`.
        self.tokenizer: Tokenizer | None = network.tokenizer
        # Set by instruction data modules (minigpt.prompts) and saved in checkpoints.
        self.prompt_style: str | None = None
        self.val_perplexity = Perplexity(ignore_index=IGNORE_INDEX)
        self.val_nll = SumMetric()
        self.val_chars = SumMetric()
        self._char_lengths: torch.Tensor | None = None
        self.skipped_batches = 0

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if getattr(datamodule, "tokenizer", None) is not None:
            self.tokenizer = datamodule.tokenizer
        if getattr(datamodule, "prompt_style", None) is not None:
            self.prompt_style = datamodule.prompt_style
        known = self.init_tokenizer
        if self.tokenizer is not None and known is not None and not self.tokenizer.extends(known):
            raise MinigptError(
                f"the data's tokenizer is not the one model.init_from {self.hparams.init_from} was trained "
                "with; set data.tokenizer_from to the same source (the CLI links it from model.init_from)"
            )
        if self.tokenizer is not None:
            lengths = torch.as_tensor(self.tokenizer.token_char_lengths(), dtype=torch.float64)
            self._char_lengths = lengths.to(self.device)
        if self.hparams.compile:
            self.model.compile()

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = self.optimizer_groups()
        optimizer = build_optimizer(groups, hp.optimizer, tuple(hp.betas))
        decay_steps = hp.lr_decay_steps or self.trainer.max_steps
        if decay_steps is None or decay_steps <= 0:
            raise MinigptError("set trainer.max_steps or model.lr_decay_steps: the learning-rate schedule needs an end")
        min_ratio, schedule = hp.min_lr / hp.learning_rate, SCHEDULES[hp.lr_schedule]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: schedule(step, hp.warmup_steps, decay_steps, min_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_groups(self, within: torch.nn.Module | None = None) -> list[dict[str, Any]]:
        """This run's parameter groups for the whole network, or for part of it (unfreezing)."""
        hp = self.hparams
        roles = self.model.parameter_roles(within)
        return optimizer_groups(roles, hp.optimizer, hp.learning_rate, hp.weight_decay, hp.muon_lr)

    # --- training ----------------------------------------------------------------------------

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        # Cross-entropy in fp32 even under bf16 autocast: the log-softmax is where precision matters.
        return F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction=reduction
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        inputs, targets = batch
        loss = self.loss(self(inputs), targets)
        if not torch.isfinite(loss):
            return self._nonfinite(loss)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _nonfinite(self, loss: torch.Tensor) -> None:
        step = self.global_step + 1
        if self.hparams.on_nonfinite_loss == "skip":
            self.skipped_batches += 1
            rank_zero_warn(f"loss is {loss.item()} at step {step}: batch skipped ({self.skipped_batches} so far)")
            self.log("train/skipped_batches", float(self.skipped_batches))
            return None  # Lightning then skips backward and the optimizer step
        raise MinigptError(
            f"loss is {loss.item()} at step {step}; the weights were not updated with it and the checkpoints "
            "already written are intact: resume from last.ckpt with a lower model.learning_rate, or set "
            "model.on_nonfinite_loss=skip"
        )

    # --- evaluation --------------------------------------------------------------------------

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        inputs, targets = batch
        logits = self(inputs)
        self.val_nll.update(self.loss(logits, targets, reduction="sum"))
        self.val_perplexity.update(logits.float(), targets)
        if self._char_lengths is not None:
            self.val_chars.update(self._char_lengths[targets[targets != IGNORE_INDEX]].sum())

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch)

    def _log_evaluation(self, stage: str) -> None:
        perplexity = self.val_perplexity.compute()
        loss = torch.log(perplexity)
        self.log(f"{stage}/loss", loss, prog_bar=True)
        checkpointer = self._trainer.checkpoint_callback if self._trainer is not None else None
        if stage == "val" and not self.trainer.sanity_checking:
            # The best so far, this validation included: the checkpointer's best is the earlier ones'.
            earlier = getattr(checkpointer, "best_model_score", None)
            self.log("val/best_loss", loss if earlier is None else torch.minimum(loss, earlier.to(loss.device)))
        self.log(f"{stage}/perplexity", perplexity)
        nll, chars = self.val_nll.compute(), self.val_chars.compute()
        if chars > 0:
            self.log(f"{stage}/bits_per_char", nll / chars / math.log(2))
        for metric in (self.val_perplexity, self.val_nll, self.val_chars):
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, Any]]:
        """Completions of a batch of prompts (minigpt.data.Prompts), one record per prompt."""
        return batch.complete(TextGenerator(self.model, self.tokenizer, self.prompt_style))

    # --- checkpoints -------------------------------------------------------------------------

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if METADATA_KEY not in checkpoint:
            return
        stored = tokenizer_from_json(checkpoint[METADATA_KEY]["tokenizer"])
        datamodule = getattr(self._trainer, "datamodule", None)
        current = getattr(datamodule, "tokenizer", None)
        # Token ids only mean something under the tokenizer that made them: refuse a mismatch.
        if current is not None and json.loads(current.to_json()) != json.loads(stored.to_json()):
            ckpt_path = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
            source = "data.tokenizer" if getattr(datamodule, "tokenizer_is_explicit", False) else "the data module"
            raise MinigptError(
                f"--ckpt_path: {ckpt_path} was trained with a {stored.kind} tokenizer of {stored.vocab_size} ids, "
                f"but {source} gives a {current.kind} tokenizer of {current.vocab_size} ids; use the checkpoint's "
                f"(data.tokenizer: {{kind: pretrained, path: {ckpt_path}}}) or train from scratch without --ckpt_path"
            )
        self.tokenizer = stored
        self.prompt_style = checkpoint[METADATA_KEY].get("prompt_style")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is None:
            raise MinigptError("cannot save a checkpoint without a tokenizer: train with a minigpt data module")
        checkpoint[METADATA_KEY] = {
            **metadata(self.arch, self.model, self.tokenizer, self.prompt_style),
            "init_from": self.hparams.init_from,
        }
        if self.arch == "gpt":
            # The checkpoint describes its own architecture, so reloading or resuming it needs
            # neither the preset nor the init_from source it started from. (A new dict: Lightning
            # put self.hparams itself there.)
            config = self.model.config.to_dict()
            resolved = {name: config[name] for name in ARCHITECTURE_FIELDS if name in self.hparams}
            checkpoint["hyper_parameters"] = {
                **checkpoint.get("hyper_parameters", {}),
                **resolved,
                "preset": None,
                "init_from": None,
            }
