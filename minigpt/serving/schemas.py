"""The request bodies of the OpenAI endpoints, validated: what each field may hold, and the
sampling settings they ask for. A field the server cannot honour is refused, never ignored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from minigpt.sampling import DEFAULT_SAMPLING, Sampling

# Fields of OpenAI's API that change the answer and that minigpt does not offer, with the values
# that leave them off (clients often send those).
UNSUPPORTED: dict[str, tuple[object, ...]] = {
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "response_format": (None, {"type": "text"}),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
}
HINTS = {
    "presence_penalty": "; minigpt's repetition_penalty (> 1) makes repeated tokens less likely",
    "frequency_penalty": "; minigpt's repetition_penalty (> 1) makes repeated tokens less likely",
}


class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationRequest(BaseModel):
    """What completions and chat completions share."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    # minigpt's own: k most likely tokens (0 or -1: no top-k), and CTRL's repetition penalty.
    top_k: int | None = Field(None, ge=-1)
    repetition_penalty: float | None = Field(None, gt=0)
    stop: list[str] = Field(default_factory=list)
    n: int = Field(1, ge=1)
    # torch's generators take 64-bit seeds; choice k of a request draws with seed + k.
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    # Declared so that a request that sets one is refused by name (see UNSUPPORTED).
    logprobs: Any = None
    top_logprobs: Any = None
    echo: Any = None
    suffix: Any = None
    best_of: Any = None
    logit_bias: Any = None
    tools: Any = None
    response_format: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None

    @field_validator(*UNSUPPORTED)
    @classmethod
    def refuse_unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if value not in UNSUPPORTED[name]:
            raise ValueError(f"is not supported by minigpt serve{HINTS.get(name, '')}")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def stop_list(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError("must be a string or a list of strings")
        return value

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def sampling(self) -> Sampling:
        """The sampling settings asked for; a field left out takes minigpt's default, as `generate` does."""
        top_k = DEFAULT_SAMPLING.top_k if self.top_k is None else self.top_k if self.top_k > 0 else None
        return Sampling(
            temperature=DEFAULT_SAMPLING.temperature if self.temperature is None else self.temperature,
            top_k=top_k,
            top_p=DEFAULT_SAMPLING.top_p if self.top_p is None else self.top_p,
            repetition_penalty=(
                DEFAULT_SAMPLING.repetition_penalty if self.repetition_penalty is None else self.repetition_penalty
            ),
        )


class CompletionRequest(GenerationRequest):
    """POST /v1/completions: a prompt, or a list of prompts, to continue."""

    prompt: list[str]

    @field_validator("prompt", mode="before")
    @classmethod
    def prompt_list(cls, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
            raise ValueError("must be a string or a non-empty list of strings (token ids are not taken)")
        if not all(value):
            raise ValueError("is empty; give at least one character")
        return value


class ContentPart(BaseModel):
    type: str
    text: str | None = None


class Message(BaseModel):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def text_only(cls, value: str | list[ContentPart] | None) -> str | list[ContentPart] | None:
        if isinstance(value, list) and any(part.type != "text" or part.text is None for part in value):
            raise ValueError("only text parts ({'type': 'text', 'text': ...}) are supported")
        return value

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content)
        return self.content or ""

    def for_template(self) -> dict[str, str]:
        """The message as a chat template reads it: role, text content, and name when given."""
        message = {"role": self.role, "content": self.text()}
        if self.name is not None:
            message["name"] = self.name
        return message


class ChatRequest(GenerationRequest):
    """POST /v1/chat/completions: a conversation to answer."""

    messages: list[Message] = Field(min_length=1)
    # The newer name OpenAI gives max_tokens in chat.
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def answer_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
