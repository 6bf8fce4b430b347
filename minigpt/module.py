"""LanguageModel: the LightningModule that trains a minigpt network on next-token prediction."""

from __future__ import annotations

import json
import math
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import AttributeDict, rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torchmetrics import SumMetric
from torchmetrics.text import Perplexity

from minigpt.allocator import LARGE_MODEL_PARAMETERS, return_large_buffers
from minigpt.bigram import BigramLM
from minigpt.checkpoint import ARCHITECTURES, METADATA_KEY, metadata, read_checkpoint, stored_tokenizer
from minigpt.constants import IGNORE_INDEX
from minigpt.errors import MinigptError
from minigpt.generation import TextGenerator
from minigpt.lora import LoRAConfig
from minigpt.model import GPT, GPTConfig
from minigpt.optim import OPTIMIZERS, SCHEDULES, build_optimizer, optimizer_groups
from minigpt.pretrained import build_network
from minigpt.tokenizers import Tokenizer


class LanguageModel(LightningModule):
    """Next-token training for a GPT or the bigram baseline.

    The network is built in `configure_model`, once the data module has settled the tokenizer:
    from scratch with the architecture `gpt`, or from the weights of `init_from`. Under FSDP
    Lightning calls that hook inside its sharding context.

    Args:
        gpt: The GPT's architecture: every field of minigpt.model.GPTConfig, as model.gpt.* keys.
            vocab_size and block_size default to the data's. With init_from, the architecture
            comes from the weights and only dropout may differ.
        lora: Fine-tune low-rank adapters instead of every weight (minigpt.lora.LoRAConfig:
            rank, alpha, dropout, targets); checkpoints then hold the adapters and the name and
            sha256 of the init_from weights they adapt.
        arch: "gpt", or "bigram" (the baseline: a table of next-token logits; `gpt` is unused).
        init_from: Start from these weights and this tokenizer: a minigpt .ckpt, a Hugging Face
            model directory (config.json, model.safetensors, tokenizer.json) or a hub name such
            as gpt2. A fine-tune config sets it through `finetune: true` and --ckpt_path.
            Training starts at step 0 with a fresh optimizer.
        optimizer: adamw (every parameter), or muon (Muon for the blocks' matrices, AdamW for the
            embeddings, head, gains and biases; minigpt.muon).
        learning_rate: Peak learning rate of AdamW.
        muon_lr: Peak learning rate of Muon's matrices (default: learning_rate).
        muon_ns_dtype: Precision of Muon's Newton-Schulz products: float32, or bfloat16 (about
            twice as fast on CPUs with AMX and on GPUs; slower on CPUs without bfloat16 units).
        min_lr: Learning rate at the end of the decay.
        weight_decay: AdamW weight decay, applied to matrices and embeddings only.
        betas: AdamW betas.
        warmup_steps: Steps of linear warmup.
        lr_schedule: After the warmup: cosine or linear decay to min_lr, or constant (minigpt.optim.SCHEDULES).
        lr_decay_steps: Step at which the decay reaches min_lr (default: trainer.max_steps).
        lr_cooldown: Fraction of the steps after the warmup that the decay takes, at their end;
            the learning rate holds its peak before (warmup-stable-decay). 1.0: all of them.
        compile: Compile the network with torch.compile (worth it on GPUs).
        on_nonfinite_loss: "stop" ends the run at a NaN/inf loss, before it reaches the weights,
            keeping the checkpoints already written; "skip" drops that batch and goes on.
    """

    def __init__(
        self,
        gpt: GPTConfig = GPTConfig(),
        lora: LoRAConfig | None = None,
        arch: Literal["gpt", "bigram"] = "gpt",
        init_from: str | None = None,
        optimizer: str = "adamw",
        learning_rate: float = 1e-3,
        muon_lr: float | None = None,
        muon_ns_dtype: Literal["float32", "bfloat16"] = "float32",
        min_lr: float = 1e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 100,
        lr_schedule: str = "cosine",
        lr_decay_steps: int | None = None,
        lr_cooldown: float = 1.0,
        compile: bool = False,
        on_nonfinite_loss: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if arch not in ARCHITECTURES:
            raise MinigptError(f"unknown model.arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if not isinstance(gpt, GPTConfig):
            raise MinigptError(f"model.gpt must be a GPTConfig (the model.gpt.* keys), got {type(gpt).__name__}")
        if min_lr > learning_rate:
            raise MinigptError(f"model.min_lr ({min_lr}) must not exceed model.learning_rate ({learning_rate})")
        if optimizer not in OPTIMIZERS:
            raise MinigptError(f"unknown model.optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not (isinstance(lr_cooldown, (int, float)) and 0 < lr_cooldown <= 1):
            raise MinigptError(f"model.lr_cooldown is a fraction of the run in (0, 1], got {lr_cooldown!r}")
        if lr_schedule not in SCHEDULES:
            raise MinigptError(f"unknown model.lr_schedule {lr_schedule!r}; choose one of {', '.join(SCHEDULES)}")
        self.arch = arch
        self.gpt = gpt
        self.lora = lora
        self.init_from = init_from
        # A LoRA checkpoint holds the adapters alone: the base weights come from init_from.
        self.strict_loading = lora is None
        self.lora_base: dict[str, str] | None = None
        # Built by configure_model, when the data has settled the tokenizer.
        self.model: GPT | BigramLM | None = None
        # The tokenizer the init_from weights were trained with: the data's must extend it.
        self.init_tokenizer: Tokenizer | None = None
        # The data module's (possibly grown) tokenizer, or a checkpoint's: saved in checkpoints.
        self.tokenizer: Tokenizer | None = None
        # Set by instruction data modules (minigpt.prompts) and saved in checkpoints.
        self.prompt_style: str | None = None
        self.val_perplexity = Perplexity(ignore_index=IGNORE_INDEX)
        self.val_nll = SumMetric()
        self.val_chars = SumMetric()
        self.skipped_batches = 0
        # The checkpoint a run resumes (set by minigpt.lightning_cli): Lightning restores it only
        # after configure_model, and its tokenizer must be checked before a network is built.
        self.resumes_from: str | None = None

    @property
    def network(self) -> GPT | BigramLM:
        """The network; it exists from `configure_model` on."""
        if self.model is None:
            raise MinigptError("the network is built when a Trainer sets up this module (configure_model)")
        return self.model

    @property
    def settings(self) -> AttributeDict:
        """`hparams`, which Lightning types as any mutable mapping: save_hyperparameters made it
        an AttributeDict."""
        return cast(AttributeDict, self.hparams)

    def configure_model(self) -> None:
        """Build the network for the data's vocabulary (idempotent: Lightning calls this for every
        fit, validate, test and predict, and a freezing callback may call it first)."""
        if self.model is not None:
            return
        datamodule = getattr(self._trainer, "datamodule", None)
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None:
            if self.resumes_from is not None:
                self._check_resumed_tokenizer(self.resumes_from, tokenizer, datamodule)
            self.tokenizer = tokenizer
            self.prompt_style = getattr(datamodule, "prompt_style", None) or self.prompt_style
        vocab_size = tokenizer.vocab_size if tokenizer is not None else self.gpt.vocab_size
        block_size = getattr(datamodule, "block_size", None) or self.gpt.block_size
        if vocab_size is None or block_size is None:
            raise MinigptError(
                "the network's vocab_size and block_size come from the data module: train through a Trainer with a "
                "minigpt data module, or set model.gpt.vocab_size and model.gpt.block_size"
            )
        network = build_network(self.arch, self.gpt, self.init_from, vocab_size, block_size, self.lora)
        if network.summary:
            rank_zero_info(network.summary)
        self.model = network.model
        if self.model.num_parameters(non_embedding=False) >= LARGE_MODEL_PARAMETERS:
            return_large_buffers()
        self.lora_base = network.lora_base
        self.init_tokenizer = network.tokenizer
        if self.tokenizer is None:
            self.tokenizer = network.tokenizer
        known = self.init_tokenizer
        if self.tokenizer is not None and known is not None and not self.tokenizer.extends(known):
            raise MinigptError(
                f"the data's tokenizer is not the one model.init_from {self.init_from} was trained "
                "with; set data.tokenizer_from to the same source (the CLI links it from model.init_from)"
            )
        if self.tokenizer is not None:
            # A buffer, so that it moves to the device with the module.
            lengths = torch.as_tensor(self.tokenizer.token_char_lengths(), dtype=torch.float64)
            self.register_buffer("char_lengths", lengths, persistent=False)
        # One batch of windows: Lightning's model summary runs it to count FLOPs (it prints 0
        # without one). Of validation's shape, so a compiled network reuses the graph for it.
        batch_size = getattr(datamodule, "batch_size", None) or 1
        self.example_input_array = torch.zeros(batch_size, block_size, dtype=torch.long)
        if self.settings.compile:
            self.model.compile()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        hp = self.settings
        groups = self.optimizer_groups()
        mixed = str(self.trainer.precision).endswith("-mixed")
        optimizer = build_optimizer(groups, hp.optimizer, tuple(hp.betas), getattr(torch, hp.muon_ns_dtype), mixed)
        decay_steps = hp.lr_decay_steps or self.trainer.max_steps
        if decay_steps is None or decay_steps <= 0:
            raise MinigptError("set trainer.max_steps or model.lr_decay_steps: the learning-rate schedule needs an end")
        min_ratio, schedule = hp.min_lr / hp.learning_rate, SCHEDULES[hp.lr_schedule]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: schedule(step, hp.warmup_steps, decay_steps, min_ratio, hp.lr_cooldown)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_groups(self, within: torch.nn.Module | None = None) -> list[dict[str, Any]]:
        """This run's parameter groups for the whole network, or for part of it (unfreezing)."""
        hp = self.settings
        roles = self.network.parameter_roles(within)
        return optimizer_groups(roles, hp.optimizer, hp.learning_rate, hp.weight_decay, hp.muon_lr)

    # --- training ----------------------------------------------------------------------------

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.network(ids)

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
            self._nonfinite(loss)
            return None  # Lightning then skips backward and the optimizer step
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _nonfinite(self, loss: torch.Tensor) -> None:
        step = self.global_step + 1
        if self.settings.on_nonfinite_loss == "skip":
            self.skipped_batches += 1
            rank_zero_warn(f"loss is {loss.item()} at step {step}: batch skipped ({self.skipped_batches} so far)")
            self.log("train/skipped_batches", float(self.skipped_batches))
            return
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
        char_lengths = getattr(self, "char_lengths", None)
        if char_lengths is not None:
            self.val_chars.update(char_lengths[targets[targets != IGNORE_INDEX]].sum())

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
        assert self.tokenizer is not None  # configure_model took the data module's
        return batch.complete(TextGenerator(self.network, self.tokenizer, self.prompt_style))

    # --- checkpoints -------------------------------------------------------------------------

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if METADATA_KEY not in checkpoint:
            return
        self.tokenizer = stored_tokenizer(checkpoint, "the checkpoint")
        self.prompt_style = checkpoint[METADATA_KEY].get("prompt_style")
        if self.lora is not None and self.model is not None:
            self._check_lora_checkpoint(checkpoint)

    def _check_lora_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed LoRA run: its adapters are all there, and the base is the one they adapt."""
        stored = checkpoint[METADATA_KEY].get("lora") or {}
        ckpt_path = self.resumes_from or "the checkpoint"
        if self.lora_base is not None and stored.get("fingerprint") not in (None, self.lora_base["fingerprint"]):
            raise MinigptError(
                f"--ckpt_path: {ckpt_path} holds LoRA adapters for other weights than model.init_from "
                f"{self.init_from} has now (their sha256 differs); resume with the base the run started from"
            )
        missing = [name for name, parameter in self.named_parameters() if parameter.requires_grad]
        missing = [name for name in missing if name not in checkpoint["state_dict"]]
        if missing:
            raise MinigptError(
                f"--ckpt_path: {ckpt_path} lacks trained weights of this LoRA run ({', '.join(missing[:3])}); "
                "its model.lora settings differ from the ones it was trained with"
            )

    def _check_resumed_tokenizer(self, ckpt_path: str, current: Tokenizer, datamodule: Any) -> None:
        """Token ids only mean something under the tokenizer that made them: a run resumed on
        data whose tokenizer differs is refused, before a network is built for it."""
        stored = stored_tokenizer(read_checkpoint(ckpt_path), ckpt_path)
        if json.loads(current.to_json()) == json.loads(stored.to_json()):
            return
        source = "data.tokenizer" if getattr(datamodule, "tokenizer_is_explicit", False) else "the data module"
        raise MinigptError(
            f"--ckpt_path: {ckpt_path} was trained with a {stored.kind} tokenizer of {stored.vocab_size} ids, "
            f"but {source} gives a {current.kind} tokenizer of {current.vocab_size} ids; use the checkpoint's "
            f"(data.tokenizer: {{kind: pretrained, path: {ckpt_path}}}) or train from scratch without --ckpt_path"
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is None:
            raise MinigptError("cannot save a checkpoint without a tokenizer: train with a minigpt data module")
        checkpoint[METADATA_KEY] = {
            **metadata(self.arch, self.network, self.tokenizer, self.prompt_style),
            "init_from": self.init_from,
        }
        # The checkpoint describes its own architecture, sizes included, so that reloading or
        # resuming it needs neither the data's sizes nor the init_from source it started from
        # (except a LoRA run's, whose base weights stay there). (A new dict: Lightning put
        # self.hparams itself there.)
        architecture = self.network.config if self.arch == "gpt" else self.gpt
        checkpoint["hyper_parameters"] = {
            **checkpoint.get("hyper_parameters", {}),
            "gpt": architecture.to_dict(),
            "lora": None if self.lora is None else self.lora.to_dict(),
            "init_from": None if self.lora is None else self.init_from,
        }
        if self.lora is not None and self.lora_base is not None:
            checkpoint[METADATA_KEY]["lora"] = {**self.lora_base, "config": self.lora.to_dict()}
            # Only what trains: the frozen base weights are the base's.
            trained = {
                f"model.{name}" for name, parameter in self.network.named_parameters() if parameter.requires_grad
            }
            checkpoint["state_dict"] = {
                name: value for name, value in checkpoint["state_dict"].items() if name in trained
            }
