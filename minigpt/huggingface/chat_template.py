"""Chat templates: a conversation (OpenAI-style messages) as the text a minigpt model continues,
written in Jinja so that `minigpt serve` and transformers' `apply_chat_template` build one prompt.

An instruction-tuned checkpoint was trained on single exchanges in its prompt style, each ended by
the end-of-text token. A conversation is rendered as that: every user message in the style's
instruction template (which ends with the response header, so the prompt for the answer is part
of the user turn), every assistant message followed by the end-of-text token (or a blank line
when the tokenizer has none), and a system message as a paragraph of its own.

A model without a prompt style is a plain language model: the messages' contents are joined by
newlines, whatever their role, so one user message is exactly the text a completion would continue.
"""

from __future__ import annotations

from minigpt.prompts import PromptStyle

# What follows an assistant message: the end-of-text token ended every response in training.
_TURN_END = "(eos_token if eos_token is defined and eos_token else '\\n\\n')"
_MARK = "\x00instruction\x00"


def jinja_string(text: str) -> str:
    """`text` as a Jinja string literal (Jinja reads backslash escapes the way Python does)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "'"


def style_chat_template(style: PromptStyle) -> str:
    """The Jinja chat template of an instruction-tuned model's prompt style."""
    before, after = style.format(_MARK).split(_MARK)
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}"
        "{{- message['content'] + '\\n\\n' -}}"
        "{%- elif message['role'] == 'user' -%}"
        f"{{{{- {jinja_string(before)} + message['content'] + {jinja_string(after)} -}}}}"
        "{%- elif message['role'] == 'assistant' -%}"
        f"{{{{- message['content'] + {_TURN_END} -}}}}"
        "{%- else -%}"
        "{{- raise_exception('messages: role ' + message['role'] + ' is not one of system, user, assistant') -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


# Roles are not text a plain language model knows: only the contents go in.
PLAIN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- message['content'] -}}"
    "{%- if not loop.last -%}{{- '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
)


def chat_template_for(style: PromptStyle | None) -> str:
    return PLAIN_CHAT_TEMPLATE if style is None else style_chat_template(style)
