"""The response bodies of the OpenAI endpoints: whole answers, and the chunks of a stream."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def server_sent_event(data: dict[str, Any] | str) -> str:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n"


@dataclass
class Answer:
    """What a request has produced so far, per choice, and how to write it for either endpoint."""

    chat: bool
    model: str
    prompt_tokens: int
    choices: int
    include_usage: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.texts = [""] * self.choices
        self.tokens = [0] * self.choices
        self.finish: list[str | None] = [None] * self.choices
        self.error: str | None = None  # why generation failed, if it did

    @property
    def done(self) -> bool:
        return all(reason is not None for reason in self.finish)

    @property
    def completion_tokens(self) -> int:
        return sum(self.tokens)

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        prefix = "chatcmpl-" if self.chat else "cmpl-"
        return {"id": prefix + self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self) -> dict[str, Any]:
        """The response of a request that did not stream."""
        choices = []
        for index, (text, reason) in enumerate(zip(self.texts, self.finish, strict=True)):
            content = {"message": {"role": "assistant", "content": text}} if self.chat else {"text": text}
            choices.append({"index": index, **content, "logprobs": None, "finish_reason": reason})
        return {
            **self._head(chunk=False),
            "choices": choices,
            "usage": usage(self.prompt_tokens, self.completion_tokens),
        }

    def chunk(self, index: int, text: str | None = None, finish: str | None = None, role: bool = False) -> str:
        """One server-sent event: new text of choice `index`, or its end (`finish`)."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            content: dict[str, Any] = {"delta": delta}
        else:
            content = {"text": text or ""}
        body = {
            **self._head(chunk=True),
            "choices": [{"index": index, **content, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            body["usage"] = None
        return server_sent_event(body)

    def usage_chunk(self) -> str:
        """The last event when the client asked for usage (stream_options.include_usage)."""
        return server_sent_event(
            {**self._head(chunk=True), "choices": [], "usage": usage(self.prompt_tokens, self.completion_tokens)}
        )
