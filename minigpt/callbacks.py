"""Training callbacks minigpt adds to every run: throughput and MFU, learning rate and gradient
norm, the random state a resumed run needs, CPU threads shared with other runs, and stopping
cleanly on a signal."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from minigpt.errors import MinigptError
from minigpt.threads import ThreadPolicy

# How often a CPU run looks whether other minigpt processes started or ended beside it.
THREAD_CHECK_SECONDS = 2.0

# Dense bf16 peak FLOP/s per device, for MFU. Unknown devices get no MFU rather than a guess.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "RTX 4090": 165e12,
}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


class ThroughputLogger(Callback):
    """Logs training tokens/s (all ranks together) and, on known GPUs, MFU.

    Lightning's ThroughputMonitor synchronises CUDA after every batch; this measures over the
    logging interval instead, so the GPU queue never drains just to be timed. Validation time is
    left out of the window.
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._tokens = 0

    def _restart(self) -> None:
        self._start, self._tokens = None, 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._start is None:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._tokens += batch[0].numel()
        if trainer.global_step % trainer.log_every_n_steps != 0 or self._start is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._start
        tokens_per_sec = self._tokens * trainer.world_size / elapsed
        pl_module.log("train/tokens_per_sec", tokens_per_sec, prog_bar=True, rank_zero_only=True)
        peak = peak_flops(pl_module.device)
        flops_per_token = getattr(pl_module.model, "flops_per_token", None)
        if peak and flops_per_token:
            mfu = flops_per_token() * tokens_per_sec / (peak * trainer.world_size)
            pl_module.log("train/mfu", mfu, prog_bar=True, rank_zero_only=True)
        self._restart()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restart()


class OptimizationLogger(Callback):
    """Logs `train/lr` (the first parameter group's) and `train/grad_norm` (before clipping)
    every `log_every_n_steps` steps."""

    def __init__(self) -> None:
        self._grad_norm: torch.Tensor | None = None

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        # Measured only on the steps that are logged, after AMP has unscaled the gradients.
        if (trainer.global_step + 1) % trainer.log_every_n_steps == 0:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self._grad_norm = torch.nn.utils.get_total_norm(grads) if grads else None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % trainer.log_every_n_steps != 0:
            return
        pl_module.log("train/lr", trainer.optimizers[0].param_groups[0]["lr"])
        if self._grad_norm is not None:
            pl_module.log("train/grad_norm", self._grad_norm)
            self._grad_norm = None


class RandomState(Callback):
    """Saves torch's random state in checkpoints and restores it on resume.

    Lightning restores no random state; without it, dropout after a resume would draw other
    masks than the uninterrupted run did.
    """

    def state_dict(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if torch.cuda.is_available() and state_dict.get("cuda"):
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class CpuThreads(Callback):
    """Shares the CPU with the other minigpt processes computing on it (see minigpt.threads).

    Args:
        threads: Torch threads for this run. Unset, minigpt chooses: all of torch's threads when
            the run is alone on the CPU, an even share of them when other minigpt processes
            (parallel runs, sweep workers, DDP ranks) compute beside it; OMP_NUM_THREADS set in
            the environment is kept.
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise MinigptError(f"cpu.threads must be 1 or more, got {threads}")
        self.threads = threads
        self._policy: ThreadPolicy | None = None
        self._checked = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cpu" or self._policy is not None:
            return
        self._policy = ThreadPolicy(self.threads)
        rank_zero_info(f"minigpt: {self._policy.start()}")
        self._checked = time.monotonic()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._policy is None or time.monotonic() - self._checked < THREAD_CHECK_SECONDS:
            return
        self._checked = time.monotonic()
        change = self._policy.update()
        if change:
            rank_zero_info(f"minigpt: {change}")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._policy is not None:
            self._policy.stop()
            self._policy = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "exception")


class RemoveEmptyRun(Callback):
    """A fit that ends, or fails, before finishing a step and before writing a checkpoint leaves
    no `version_N` folder behind: it would hold only the config and an empty log."""

    def __init__(self) -> None:
        self._stepped = False

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._stepped = True

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove_if_empty(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Resuming a run that had already reached max_steps trains nothing.
        self._remove_if_empty(trainer)

    def _remove_if_empty(self, trainer: Trainer) -> None:
        folder = Path(trainer.log_dir) if trainer.log_dir else None
        if self._stepped or not trainer.is_global_zero or folder is None or not folder.is_dir():
            return
        if not any(folder.rglob("*.ckpt")) and folder.resolve() != Path(trainer.default_root_dir).resolve():
            shutil.rmtree(folder, ignore_errors=True)


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


class GracefulInterrupt(Callback):
    """On SIGINT or SIGTERM, finish the current step, save `last.ckpt` and stop.

    A second Ctrl-C stops at once (the last checkpoint written by validation stays). Under DDP
    the ranks agree on stopping at the same step, so none is left waiting for the others.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self.checkpoint_path: Path | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum)
        print(f"\nminigpt: {self.signal.name} received; stopping after this step", file=sys.stderr, flush=True)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Installed after Lightning's own SIGTERM handler (set up before training starts), which
        # would otherwise end the process without a checkpoint.
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._request_stop)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        requested = self.signal is not None
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested:
            return
        checkpointer = trainer.checkpoint_callback
        folder = checkpointer.dirpath if checkpointer and checkpointer.dirpath else trainer.default_root_dir
        self.checkpoint_path = Path(folder) / "last.ckpt"
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        if isinstance(checkpointer, ModelCheckpoint):
            # Claimed as its own, the checkpointer overwrites this file rather than writing last-v1.ckpt.
            checkpointer.last_model_path = str(self.checkpoint_path)
        # Lightning validates before honouring should_stop (it is made for early stopping): that
        # would log a point the uninterrupted run never logs and overwrite last.ckpt with a state
        # a resume counts one step short. No validation, then.
        trainer.limit_val_batches = 0
        trainer.should_stop = True
