"""The HTTP server: OpenAI's completions, chat completions and models endpoints, a health check
and the chat page, in front of the batching engine.

Handlers run on the event loop; they validate a request, encode its prompt, hand its choices to
the engine and relay the engine's events (sent from the worker thread) to the client.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from minigpt.checkpoint import Checkpoint
from minigpt.errors import MinigptError
from minigpt.serving.auth import BearerKey
from minigpt.serving.bodies import parse_request
from minigpt.serving.engine import Choice, Engine, Event, Job, QueueFull
from minigpt.serving.errors import APIError, error_body
from minigpt.serving.responses import Answer, server_sent_event
from minigpt.serving.schemas import ChatRequest, CompletionRequest, GenerationRequest
from minigpt.serving.templates import ChatTemplate

CHAT_PAGE = Path(__file__).with_name("index.html")
OPEN_PATHS = ("/health", "/")  # the page holds no model data; it asks for the key itself
# OpenAI's default for completions; chat answers may run to the server's --max_tokens.
COMPLETION_MAX_TOKENS = 16
# A client that waits for a whole answer is checked for having gone away this often (seconds).
DISCONNECT_CHECK = 1.0


@dataclass(frozen=True)
class Limits:
    """What one server takes: rows generated at once, tokens per answer, body size, waiting requests."""

    max_rows: int = 16
    max_tokens: int = 1024
    max_body_bytes: int = 1_000_000
    max_queue: int = 64


@dataclass
class Service:
    """The model behind the endpoints: its name, checkpoint, chat template and engine."""

    name: str
    checkpoint: Checkpoint
    template: ChatTemplate
    engine: Engine
    limits: Limits

    @property
    def block_size(self) -> int:
        return self.engine.block_size

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.name:
            raise APIError(
                404,
                f"model: {model!r} is not served here; this server serves {self.name!r}",
                "model",
                "model_not_found",
            )

    def answer_limit(self, asked: int | None, default: int) -> int:
        if asked is not None and asked > self.limits.max_tokens:
            raise APIError(
                400,
                f"max_tokens: {asked} is more than this server allows ({self.limits.max_tokens}, --max_tokens)",
                "max_tokens",
                "invalid_value",
            )
        return min(default, self.limits.max_tokens) if asked is None else asked

    def encode(self, text: str, field: str) -> list[int]:
        """A prompt's ids, its last block_size ones when it is longer (as `minigpt generate` does)."""
        try:
            ids = self.checkpoint.tokenizer.encode_prompt(text)
        except MinigptError as error:
            raise APIError(400, f"{field}: {error}", field, "invalid_value") from None
        return ids[-self.block_size :]

    def choices(
        self, request: GenerationRequest, prompts: list[list[int]], max_tokens: int, stop: list[str]
    ) -> list[Choice]:
        """One choice per prompt and per n; with a seed, choice k draws with seed + k."""
        count = len(prompts) * request.n
        if count > self.limits.max_rows:
            raise APIError(
                400,
                f"n: {count} answers in one request are more than the {self.limits.max_rows} rows this server "
                "generates at once (--max_rows)",
                "n",
                "invalid_value",
            )
        sampling = request.sampling()
        seeds = (
            [secrets.randbits(63) for _ in range(count)]
            if request.seed is None
            else [request.seed + k for k in range(count)]
        )
        return [
            Choice(prompt, sampling, seeds[k * request.n + j], max_tokens, tuple(stop))
            for k, prompt in enumerate(prompts)
            for j in range(request.n)
        ]


class JobStream(StreamingResponse):
    """A stream that cancels its job however the response ends: a client that goes before the
    first chunk never starts the body's generator, whose own clean-up would then never run."""

    def __init__(self, job: Job, content: AsyncIterator[str]) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


def submit(service: Service, job: Job) -> None:
    try:
        service.engine.submit(job)
    except QueueFull:
        raise APIError(
            429,
            f"the server is busy: {service.limits.max_queue} requests already wait (--max_queue); retry later",
            code="queue_full",
        ) from None


async def respond(
    service: Service, request: Request, body: GenerationRequest, choices: list[Choice], answer: Answer
) -> Response:
    """Queue the choices and send the answer, whole or as a stream."""
    loop = asyncio.get_running_loop()
    if body.stream:
        events: asyncio.Queue[list[Event]] = asyncio.Queue()
        job = Job(choices, lambda batch: loop.call_soon_threadsafe(events.put_nowait, batch))
        submit(service, job)
        return JobStream(job, stream(job, events, answer))
    finished = asyncio.Event()

    def listen(batch: list[Event]) -> None:
        # On the worker thread: the answer is only read once `finished` is set, so the event
        # loop is woken once per request, not once per step.
        for event in batch:
            record(answer, event)
        if answer.done or answer.error is not None:
            loop.call_soon_threadsafe(finished.set)

    job = Job(choices, listen)
    submit(service, job)
    try:
        while not finished.is_set():
            try:
                await asyncio.wait_for(finished.wait(), timeout=DISCONNECT_CHECK)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return JSONResponse(error_body(400, "the client went away"), status_code=400)
        if answer.error is not None:
            raise APIError(500, answer.error)
        return JSONResponse(answer.whole())
    finally:
        job.cancel()  # a client gone mid-answer frees its rows


def record(answer: Answer, event: Event) -> None:
    if event.error is not None:
        answer.error = event.error
        return
    answer.texts[event.choice] += event.text
    answer.tokens[event.choice] = event.tokens
    if event.finish is not None:
        answer.finish[event.choice] = event.finish


async def stream(job: Job, events: asyncio.Queue[list[Event]], answer: Answer) -> AsyncIterator[str]:
    """Server-sent events: a chunk per piece of text, usage if asked, then `data: [DONE]`."""
    try:
        if answer.chat:
            yield "".join(answer.chunk(index, role=True) for index in range(answer.choices))
        while not answer.done and answer.error is None:
            chunks = []
            for event in await events.get():  # one step's events: one write
                record(answer, event)
                if event.error is None:
                    chunks.append(answer.chunk(event.choice, event.text, event.finish))
            if answer.error is not None:
                chunks.append(server_sent_event(error_body(500, answer.error)))
            yield "".join(chunks)
        if answer.error is None and answer.include_usage:
            yield answer.usage_chunk()
        yield server_sent_event("[DONE]")
    finally:
        job.cancel()  # also when the client disconnects and the stream is closed mid-answer


def create_app(service: Service, api_key: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.engine.start()
        yield
        service.engine.stop()

    app = FastAPI(title="minigpt serve", lifespan=lifespan)
    if api_key:
        app.add_middleware(BearerKey, key=api_key, open_paths=OPEN_PATHS)
    limit = service.limits.max_body_bytes
    page = CHAT_PAGE.read_text(encoding="utf-8")

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(error.status_code, f"{request.url.path}: {error.detail}"), error.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(error_body(500, f"internal error: {type(error).__name__}: {error}"), 500)

    @app.get("/", response_class=HTMLResponse)
    async def chat_page() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        engine = service.engine
        return {
            "status": "ok",
            "model": service.name,
            "rows": engine.active_rows,
            "queued": engine.queued_jobs,
            "forward_passes": engine.forward_passes,
            "tokens_generated": engine.tokens_generated,
        }

    def model_card() -> dict:
        return {
            "id": service.name,
            "object": "model",
            "created": 0,
            "owned_by": "minigpt",
            "max_model_len": service.block_size,
        }

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str) -> dict:
        service.check_model(model)
        return model_card()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await parse_request(request, CompletionRequest, limit)
        service.check_model(body.model)
        max_tokens = service.answer_limit(body.max_tokens, COMPLETION_MAX_TOKENS)
        prompts = [service.encode(text, "prompt") for text in body.prompt]
        choices = service.choices(body, prompts, max_tokens, body.stop)
        answer = Answer(False, service.name, sum(map(len, prompts)), len(choices), body.include_usage)
        return await respond(service, request, body, choices, answer)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await parse_request(request, ChatRequest, limit)
        service.check_model(body.model)
        max_tokens = service.answer_limit(body.answer_limit, service.limits.max_tokens)
        template = service.template
        try:
            text = template.render([message.for_template() for message in body.messages])
            prompt = template.encode(text, service.checkpoint.tokenizer)[-service.block_size :]
        except MinigptError as error:
            raise APIError(400, f"messages: {error}", "messages", "invalid_value") from None
        if not prompt:
            raise APIError(
                400, "messages: the conversation makes an empty prompt; give some text", "messages", "invalid_value"
            )
        style = service.checkpoint.style
        stop = [*body.stop, *(style.stop_sequences if style else ()), *template.stop_sequences]
        choices = service.choices(body, [prompt], max_tokens, stop)
        answer = Answer(True, service.name, len(prompt), len(choices), body.include_usage)
        return await respond(service, request, body, choices, answer)

    return app
