"""Chat messages to prompt ids, rendered the way transformers' `apply_chat_template` renders them.

The template is the model directory's own `chat_template` when it brings one (every instruct
model on the hub does), else minigpt's template for the checkpoint's prompt style (the one
`minigpt export` writes, minigpt.huggingface.chat_template). Rendering follows transformers: a
sandboxed Jinja environment with trim_blocks and lstrip_blocks, the `raise_exception`,
`strftime_now` and `tojson` helpers, `{% generation %}` blocks rendered as their body, and the
tokenizer's special tokens (`bos_token`, `eos_token`, ...) as variables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from minigpt.checkpoint import Checkpoint
from minigpt.errors import MinigptError
from minigpt.huggingface.chat_template import chat_template_for
from minigpt.huggingface.export import special_tokens
from minigpt.tokenizers import Tokenizer

# The special tokens transformers hands a template, under its names.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class GenerationBlock(Extension):
    """`{% generation %}...{% endgeneration %}` marks an assistant's tokens for training masks;
    rendering a prompt shows its body, in a scope of its own as transformers' call block has."""

    tags = {"generation"}  # noqa: RUF012 (Jinja reads it as a class attribute)

    def parse(self, parser: jinja2.parser.Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters; a prompt wants the plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def template_environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda format: datetime.now().strftime(format)
    return environment


def token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken's fields."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


@dataclass
class ChatTemplate:
    """A Jinja chat template and the special tokens it sees."""

    source: str
    special_tokens: dict[str, str] = field(default_factory=dict)
    origin: str = "minigpt"

    def __post_init__(self) -> None:
        try:
            self._template = template_environment().from_string(self.source)
        except jinja2.TemplateError as error:
            raise MinigptError(f"the chat template of {self.origin} does not parse: {error}") from None

    @property
    def stop_sequences(self) -> list[str]:
        """The end-of-sequence text ends an answer even where it is not the tokenizer's end-of-text id."""
        eos = self.special_tokens.get("eos_token")
        return [eos] if eos else []

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text; a message the template refuses raises MinigptError with its reason."""
        try:
            return self._template.render(
                messages=list(messages),
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self.special_tokens,
            )
        except jinja2.TemplateError as error:
            raise MinigptError(f"the chat template refuses these messages: {error}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise MinigptError(f"the chat template fails on these messages ({type(error).__name__}: {error})") from None

    def encode(self, text: str, tokenizer: Tokenizer) -> list[int]:
        """The ids of a rendered prompt: its special tokens' text is their ids in every minigpt
        tokenizer, as in transformers (no beginning-of-text added: a template writes its own)."""
        return tokenizer.encode(text)


def read_directory_template(directory: Path) -> ChatTemplate | None:
    """The chat template a Hugging Face model directory brings (chat_template.jinja, or the
    `chat_template` of tokenizer_config.json), with its special tokens; None when it has none."""
    config_path = directory / "tokenizer_config.json"
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise MinigptError(f"{config_path} is not valid JSON ({error})") from None
    source = config.get("chat_template")
    if isinstance(source, list):  # named templates: the default one serves chat
        source = next((entry.get("template") for entry in source if entry.get("name") == "default"), None)
    jinja_file = directory / "chat_template.jinja"
    if jinja_file.is_file():
        source = jinja_file.read_text(encoding="utf-8")
    if not isinstance(source, str):
        return None
    tokens = {name: text for name in SPECIAL_TOKEN_NAMES if (text := token_text(config.get(name))) is not None}
    map_path = directory / "special_tokens_map.json"
    if map_path.is_file():
        try:
            mapped = json.loads(map_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise MinigptError(f"{map_path} is not valid JSON ({error})") from None
        for name in SPECIAL_TOKEN_NAMES:
            if name not in tokens and (text := token_text(mapped.get(name))) is not None:
                tokens[name] = text
    return ChatTemplate(source, tokens, origin=str(directory))


def checkpoint_template(checkpoint: Checkpoint) -> ChatTemplate:
    """The chat template a checkpoint is served with: its directory's own, or minigpt's for its
    prompt style (the plain one without a style), with the special tokens `minigpt export` writes."""
    if checkpoint.path is not None and checkpoint.path.is_dir():
        found = read_directory_template(checkpoint.path)
        if found is not None:
            return found
    tokenizer = checkpoint.tokenizer
    specials = special_tokens(tokenizer)
    return ChatTemplate(
        chat_template_for(checkpoint.style),
        {name: text for name, (text, _) in specials.items()},
        origin=str(checkpoint.path),
    )
