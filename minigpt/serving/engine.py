"""The batching scheduler: one worker thread owns the model and generates every request's rows
together, one forward pass per step for the whole batch.

Continuous batching: a request that arrives while others generate joins the running batch at the
next step instead of waiting for it to finish. Its prompt is prefilled on its own (rows of one
length together), exactly as `minigpt generate` feeds it, and its cache is copied into the batch
(minigpt.serving.batch). A row whose context window is full slides as it would alone: its last
tokens are prefilled again and copied back in. So each row gets the tokens it would get alone:
greedy rows exactly, and a seeded row draws from its own generator whatever else the batch holds.

Rows end on their own (end-of-text, a stop sequence, max_tokens) and leave the batch at once; a
cancelled request (its client went away) frees its rows before the next step.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from minigpt.generation import StopScanner, kept_on_slide, next_token
from minigpt.model import GPT
from minigpt.sampling import Sampling
from minigpt.serving.batch import BatchCache
from minigpt.tokenizers import Tokenizer


@dataclass(frozen=True)
class Choice:
    """One answer a request asks for: its prompt ids and how to generate from them."""

    prompt: list[int]
    sampling: Sampling
    seed: int
    max_tokens: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    """New text of one choice; `finish` ("stop" or "length") when it is its last, `error` when
    generation failed."""

    choice: int
    text: str
    tokens: int = 0
    finish: str | None = None
    error: str | None = None


class QueueFull(Exception):
    """More requests wait than the server takes."""


@dataclass(eq=False)
class Job:
    """A request's choices and where their events go: `listener` is called on the worker thread,
    once per step with that step's events (one wake-up of the server per request and step)."""

    choices: list[Choice]
    listener: Callable[[list[Event]], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class Row:
    """A choice being generated: every id so far (prompt and answer), its generator and its text."""

    job: Job
    index: int
    choice: Choice
    generator: torch.Generator
    ids: list[int]
    scanner: StopScanner
    answer: list[int] = field(default_factory=list)
    steps: int = 0
    finished: bool = False


class Engine:
    """Generates the rows of every submitted job in one batch, on a thread of its own."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        max_rows: int,
        max_queue: int,
        join_running_batch: bool = True,
        max_context: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_rows = max_rows
        self.max_queue = max_queue
        # False: requests wait until the running batch has finished (for measuring what joining buys).
        self.join_running_batch = join_running_batch
        self.device = model.transformer.wte.weight.device
        # The window rows slide at: the model's context, or less for models whose context
        # (128k positions) would make the shared cache too large to hold.
        assert model.config.block_size is not None  # a GPT's config has its sizes
        self.block_size = min(model.config.block_size, max_context or model.config.block_size)
        self.keep = kept_on_slide(self.block_size)
        self._cache: BatchCache | None = None
        self._rows: list[Row] = []  # in the cache's row order
        self._entering: list[Row] = []  # rows being prefilled this step
        # What /health reports as rows: those of the last step that go on. Read from other
        # threads, so set once per step: mid-step a sliding row is out of `_rows`, being re-fed.
        self._active_rows = 0
        self._waiting: deque[Job] = deque()
        self._wake = threading.Condition()
        self._stopped = False
        # What batching buys, for /health: tokens generated per forward pass.
        self.forward_passes = 0
        self.tokens_generated = 0
        self._thread = threading.Thread(target=self._run, name="minigpt-engine", daemon=True)

    # The request side (any thread).

    def start(self) -> None:
        self._cache = BatchCache(self.model, self.max_rows, self.block_size)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def submit(self, job: Job) -> None:
        """Queue a job; QueueFull when max_queue jobs already wait."""
        with self._wake:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull
            self._waiting.append(job)
            self._wake.notify()

    @property
    def active_rows(self) -> int:
        return self._active_rows

    @property
    def queued_jobs(self) -> int:
        return len(self._waiting)

    # The worker thread.

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and not self._waiting and not self._rows:
                    self._wake.wait()
                if self._stopped:
                    return
            try:
                with torch.inference_mode():
                    self._step()
            except Exception as error:  # a failed step must not take the server down
                self._fail_everything(f"generation failed: {type(error).__name__}: {error}")

    def _admit(self) -> list[Row]:
        """New rows from waiting jobs that fit (first come, first served), skipping cancelled ones."""
        admitted: list[Row] = []
        if self._rows and not self.join_running_batch:
            return admitted
        with self._wake:
            while self._waiting:
                job = self._waiting[0]
                if job.cancelled:
                    self._waiting.popleft()
                    continue
                if len(self._rows) + len(admitted) + len(job.choices) > self.max_rows:
                    break
                self._waiting.popleft()
                admitted += [self._new_row(job, index, choice) for index, choice in enumerate(job.choices)]
        return admitted

    def _new_row(self, job: Job, index: int, choice: Choice) -> Row:
        generator = torch.Generator(device=self.device).manual_seed(choice.seed)
        return Row(job, index, choice, generator, list(choice.prompt), StopScanner(choice.stop))

    def _step(self) -> None:
        cache = self._cache
        assert cache is not None
        for position in reversed(range(len(self._rows))):
            if self._rows[position].job.cancelled:
                self._remove(position)
        prefill = self._entering = self._admit()
        # A row whose window would pass the context slides: its last `keep` tokens are fed again.
        for position in reversed(range(len(self._rows))):
            if cache.window(position) + 1 > self.block_size:
                prefill.append(self._rows[position])
                self._remove(position)
        stepped: list[tuple[Row, int]] = []
        if self._rows:
            cache.make_room()
            kv, pads = cache.step_inputs()
            pending = torch.tensor([[row.ids[-1]] for row in self._rows], device=self.device)
            logits = self.model(pending, kv, pads=pads)[:, -1]
            self.forward_passes += 1
            cache.advance()
            stepped += zip(self._rows, self._pick(self._rows, logits), strict=True)
        by_length: dict[int, list[Row]] = defaultdict(list)
        for row in prefill:
            by_length[len(self._window(row))].append(row)
        for rows in by_length.values():
            # Rows of one length need no padding: the same forward pass `minigpt generate` makes.
            ids = torch.tensor([self._window(row) for row in rows], device=self.device)
            kv = self.model.new_cache(len(rows), ids.size(1))
            logits = self.model(ids, kv)[:, -1]
            self.forward_passes += 1
            cache.add(kv)
            self._rows += rows
            stepped += zip(rows, self._pick(rows, logits), strict=True)
        self._entering = []
        self.tokens_generated += len(stepped)
        events: dict[Job, list[Event]] = defaultdict(list)
        for row, token in stepped:
            event = self._deliver(row, token)
            if event is not None and not row.job.cancelled:
                events[row.job].append(event)
        # Counted before the answers go out, so that a client that has its token sees its row.
        self._active_rows = sum(not row.finished for row in self._rows)
        for job, job_events in events.items():
            job.listener(job_events)
        for position in reversed(range(len(self._rows))):
            if self._rows[position].finished:
                self._remove(position)

    def _window(self, row: Row) -> list[int]:
        """The tokens a row feeds when it (re)enters the batch: its prompt (cut to the context),
        or the last `keep` tokens of a row that slides."""
        if row.steps == 0:
            return row.ids[-self.block_size :]
        return row.ids[-self.keep :]

    def _remove(self, position: int) -> None:
        assert self._cache is not None
        self._cache.remove(position)
        last = self._rows.pop()
        if position < len(self._rows):
            self._rows[position] = last

    def _pick(self, rows: Sequence[Row], logits: torch.Tensor) -> list[int]:
        """Each row's next token from its last-position logits (len(rows), vocab), with its own
        sampling settings and generator; rows that share settings are picked together."""
        tokens = [0] * len(rows)
        groups: dict[Sampling, list[int]] = defaultdict(list)
        for position, row in enumerate(rows):
            groups[row.choice.sampling].append(position)
        for sampling, positions in groups.items():
            if sampling.repetition_penalty != 1.0:
                # The penalty reads each row's own history, of its own length.
                for position in positions:
                    row = rows[position]
                    history = torch.tensor([row.ids], device=self.device)
                    picked = next_token(logits[position : position + 1], history, sampling, [row.generator])
                    tokens[position] = int(picked)
                continue
            index = torch.tensor(positions, device=self.device)
            unused_history = torch.zeros(len(positions), 1, dtype=torch.long, device=self.device)
            generators = [rows[position].generator for position in positions]
            picked = next_token(logits.index_select(0, index), unused_history, sampling, generators)
            for position, token in zip(positions, picked[:, 0].tolist(), strict=True):
                tokens[position] = token
        return tokens

    def _deliver(self, row: Row, token: int) -> Event | None:
        """Add a row's new token; the event of the text that is now safe to show, if any."""
        row.steps += 1
        scanner, decode = row.scanner, self.tokenizer.decode
        finish = None
        if token == self.tokenizer.eot_id:
            text, finish = scanner.update(decode(row.answer), final=True), "stop"
        else:
            row.ids.append(token)
            row.answer.append(token)
            text = scanner.update(decode(row.answer))
            if scanner.stopped:
                finish = "stop"
            elif row.steps >= row.choice.max_tokens:
                # What was held back as a possible stop sequence's start is text after all.
                text += scanner.update(decode(row.answer), final=True)
                finish = "length"
        row.finished = finish is not None
        return Event(row.index, text, row.steps, finish) if text or finish else None

    def _fail_everything(self, message: str) -> None:
        """Tell every job in the batch that generation failed, and start again with an empty batch."""
        jobs = {id(row.job): row.job for row in [*self._rows, *self._entering]}
        self._rows, self._entering = [], []
        self._active_rows = 0
        self._cache = BatchCache(self.model, self.max_rows, self.block_size)
        for job in jobs.values():
            job.cancel()
            job.listener([Event(index, "", error=message) for index in range(len(job.choices))])
