"""LanguageModel: the LightningModule that trains a minigpt network on next-token prediction."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import SumMetric
from torchmetrics.text import Perplexity

from minigpt.checkpoint import ARCHITECTURES, METADATA_KEY, build_model, metadata
from minigpt.constants import IGNORE_INDEX
from minigpt.errors import MinigptError, first_line
from minigpt.generation import generate_text
from minigpt.model import GPT, PRESETS
from minigpt.optim import adamw_groups, warmup_cosine
from minigpt.pretrained import fit_vocabulary, load_pretrained
from minigpt.tokenizers import Tokenizer, tokenizer_from_json

RNG_KEY = "minigpt_rng"
# LanguageModel arguments that a GPT checkpoint records from its actual network.
ARCHITECTURE_HPARAMS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "gelu")


def check_same_tokenizer(stored: Tokenizer, datamodule: Any, ckpt_path: str | None) -> None:
    """Token ids only mean something under the tokenizer that made them: refuse a mismatch."""
    current = datamodule.tokenizer
    if json.loads(current.to_json()) == json.loads(stored.to_json()):
        return
    source = "data.tokenizer" if getattr(datamodule, "tokenizer_is_explicit", False) else "the data module"
    raise MinigptError(
        f"--ckpt_path: {ckpt_path or 'the checkpoint'} was trained with a {stored.kind} tokenizer of "
        f"{stored.vocab_size} ids, but {source} gives a {current.kind} tokenizer of {current.vocab_size} ids; "
        f"use the checkpoint's (data.tokenizer: {{kind: pretrained, path: {ckpt_path or 'CKPT'}}}) "
        "or train from scratch without --ckpt_path"
    )


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
        init_from: Start from these weights and this tokenizer: a minigpt .ckpt, a Hugging Face
            GPT-2 directory (config.json, model.safetensors, tokenizer.json) or a hub name such as
            gpt2. The architecture comes from it; a fine-tune config sets it through
            `finetune: true` and --ckpt_path. Training starts at step 0 with a fresh optimizer.
        learning_rate: Peak learning rate of AdamW.
        min_lr: Learning rate at the end of the cosine decay.
        weight_decay: AdamW weight decay, applied to matrices and embeddings only.
        betas: AdamW betas.
        warmup_steps: Steps of linear warmup.
        lr_decay_steps: Step at which the cosine reaches min_lr (default: trainer.max_steps).
        sample_prompt: Text sampled from at each validation and logged to TensorBoard.
        sample_tokens: Tokens in that sample.
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
        init_from: str | None = None,
        learning_rate: float = 1e-3,
        min_lr: float = 1e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 100,
        lr_decay_steps: int | None = None,
        sample_prompt: str = "\n",
        sample_tokens: int = 200,
        compile: bool = False,
        on_nonfinite_loss: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if vocab_size is None:
            raise MinigptError("model.vocab_size is not set; it comes from the data module (data.vocab_size)")
        if arch not in ARCHITECTURES:
            raise MinigptError(f"unknown model.arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if preset is not None and preset not in PRESETS:
            raise MinigptError(f"unknown model.preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if min_lr > learning_rate:
            raise MinigptError(f"model.min_lr ({min_lr}) must not exceed model.learning_rate ({learning_rate})")
        self.arch = arch
        shape = dict(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        given = {**shape, "dropout": dropout, "bias": bias, "gelu": gelu}
        self.tokenizer: Tokenizer | None = None
        # Set by instruction data modules (minigpt.prompts) and saved in checkpoints.
        self.prompt_style: str | None = None
        # The tokenizer the init_from weights were trained with: the data's must extend it.
        self.init_tokenizer: Tokenizer | None = None
        if init_from is None:
            self.model = build_model(arch, self._architecture(arch, preset, given))
        else:
            self.model, self.init_tokenizer = self._from_pretrained(init_from, arch, preset, given)
            self.tokenizer = self.init_tokenizer  # until a data module brings its (possibly grown) copy
        self.val_perplexity = Perplexity(ignore_index=IGNORE_INDEX)
        self.val_nll = SumMetric()
        self.val_chars = SumMetric()
        self._char_lengths: torch.Tensor | None = None
        self._grad_norm: torch.Tensor | None = None
        self.skipped_batches = 0

    @staticmethod
    def _architecture(arch: str, preset: str | None, given: dict[str, Any]) -> dict[str, Any]:
        """Values set in the config win over the preset's, which win over GPTConfig's defaults."""
        if arch == "bigram":
            return {"vocab_size": given["vocab_size"], "block_size": given["block_size"] or 1}
        values = PRESETS[preset].to_dict() if preset else {}
        values.update({name: value for name, value in given.items() if value is not None})
        return values

    @staticmethod
    def _from_pretrained(init_from: str, arch: str, preset: str | None, given: dict[str, Any]) -> tuple[GPT, Tokenizer]:
        """The network of `init_from`, with config dropout, and token rows for any added tokens."""
        if arch != "gpt":
            raise MinigptError(f"model.init_from loads GPT weights; model.arch is {arch!r}, set it to gpt")
        if preset is not None:
            raise MinigptError("model.preset and model.init_from are both set; remove model.preset")
        source = load_pretrained(init_from)
        config = source.config
        for name in ("n_layer", "n_head", "n_embd", "bias", "gelu"):
            if given[name] is not None and given[name] != getattr(config, name):
                raise MinigptError(
                    f"model.{name} is {given[name]} but model.init_from {init_from} has {getattr(config, name)}; "
                    f"remove model.{name}: the architecture comes from the weights"
                )
        block_size = given["block_size"] or config.block_size
        if block_size > config.block_size:
            raise MinigptError(
                f"data.block_size ({block_size}) is longer than the {config.block_size} positions of "
                f"model.init_from {init_from}; set data.block_size to {config.block_size} or less"
            )
        # Rows for tokens the data added (a grown character vocabulary); a source with more rows
        # than its tokenizer has tokens (a padded vocabulary) keeps them all.
        vocab_size = max(given["vocab_size"], config.vocab_size)
        # The model keeps all the source's positions: shorter training windows use the first ones.
        dropout = config.dropout if given["dropout"] is None else given["dropout"]
        model = GPT(replace(config, vocab_size=vocab_size, dropout=dropout))
        try:
            model.load_state_dict(fit_vocabulary(source.state_dict, model.state_dict()))
        except RuntimeError as error:
            raise MinigptError(
                f"model.init_from: {init_from} has weights that do not fit its config ({first_line(error)})"
            ) from None
        rank_zero_info(
            f"model.init_from: {init_from} ({model.num_parameters():,} parameters, "
            f"{config.n_layer} layers; {vocab_size - config.vocab_size} tokens added to its vocabulary)"
        )
        return model, source.tokenizer

    # --- setup -------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "tokenizer", None) is not None:
            self.tokenizer = datamodule.tokenizer
        if datamodule is not None and getattr(datamodule, "prompt_style", None) is not None:
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
        groups = adamw_groups(self.model.parameter_roles(), hp.weight_decay)
        # The fused kernel updates every parameter in one pass (see benchmarks/README.md for its speed).
        optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, betas=tuple(hp.betas), fused=True)
        decay_steps = hp.lr_decay_steps or self.trainer.max_steps
        if decay_steps is None or decay_steps <= 0:
            raise MinigptError("set trainer.max_steps or model.lr_decay_steps: the cosine schedule needs an end")
        min_ratio = hp.min_lr / hp.learning_rate
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, hp.warmup_steps, decay_steps, min_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

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

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # clip_grad_norm_ returns the norm it measured: logging it costs nothing extra.
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            self._grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (self.trainer.global_step % self.trainer.log_every_n_steps) != 0:
            return
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        if self._grad_norm is not None:
            self.log("train/grad_norm", self._grad_norm)

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
        self.log(f"{stage}/loss", torch.log(perplexity), prog_bar=True)
        self.log(f"{stage}/perplexity", perplexity)
        nll, chars = self.val_nll.compute(), self.val_chars.compute()
        if chars > 0:
            self.log(f"{stage}/bits_per_char", nll / chars / math.log(2))
        for metric in (self.val_perplexity, self.val_nll, self.val_chars):
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")
        if not self.trainer.sanity_checking:
            self._log_sample()

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def _log_sample(self) -> None:
        if self.tokenizer is None or not self.trainer.is_global_zero:
            return
        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        prompt = self.hparams.sample_prompt
        try:
            self.tokenizer.encode(prompt)
        except MinigptError:
            rank_zero_warn(f"model.sample_prompt {prompt!r} is outside the vocabulary; no sample is logged")
            return
        text = generate_text(
            self.model, self.tokenizer, prompt, self.hparams.sample_tokens, temperature=0.8, top_k=200, seed=0
        )
        # Markdown would swallow the play-script line breaks: show the sample as a code block.
        block = "\n".join("    " + line for line in (prompt + text).splitlines())
        for logger in loggers:
            logger.experiment.add_text("sample", block, global_step=self.global_step)

    # --- checkpoints -------------------------------------------------------------------------

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if METADATA_KEY in checkpoint:
            stored = tokenizer_from_json(checkpoint[METADATA_KEY]["tokenizer"])
            datamodule = getattr(self._trainer, "datamodule", None)
            if datamodule is not None and getattr(datamodule, "tokenizer", None) is not None:
                check_same_tokenizer(stored, datamodule, getattr(self._trainer, "ckpt_path", None))
            self.tokenizer = stored
            self.prompt_style = checkpoint[METADATA_KEY].get("prompt_style")
        # Lightning restores no random state; dropout after a resume must draw what it would have.
        if RNG_KEY in checkpoint and self._trainer is not None:
            torch.set_rng_state(checkpoint[RNG_KEY]["torch"])
            if torch.cuda.is_available() and checkpoint[RNG_KEY].get("cuda"):
                torch.cuda.set_rng_state_all(checkpoint[RNG_KEY]["cuda"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is None:
            raise MinigptError("cannot save a checkpoint without a tokenizer: train with a minigpt data module")
        checkpoint[METADATA_KEY] = {
            **metadata(self.arch, self.model, self.tokenizer, self.prompt_style),
            "init_from": self.hparams.init_from,
        }
        checkpoint[RNG_KEY] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.arch == "gpt":
            # The checkpoint describes its own architecture, so reloading or resuming it needs
            # neither the preset nor the init_from source it started from. (A new dict: Lightning
            # put self.hparams itself there.)
            config = self.model.config
            resolved = {name: getattr(config, name) for name in ARCHITECTURE_HPARAMS}
            checkpoint["hyper_parameters"] = {
                **checkpoint.get("hyper_parameters", {}),
                **resolved,
                "preset": None,
                "init_from": None,
            }
