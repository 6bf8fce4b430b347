"""Prompt styles: how an instruction (and its optional context) becomes the text a model continues.

A style is chosen by name for instruction tuning and saved in the checkpoint, so `generate` and
`chat` wrap a user's prompt exactly as the training data was wrapped.
"""

from __future__ import annotations

from dataclasses import dataclass

from minigpt.errors import MinigptError

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task{paired}. "
    "Write a response that appropriately completes the request.\n\n"
)


@dataclass(frozen=True)
class PromptStyle:
    """Templates with `{instruction}` and `{context}` fields, one for records without context.

    stop_sequences: text that means the model has started a new example of the template, so
        generation stops there even when the tokenizer has no end-of-text token.
    """

    name: str
    with_context: str
    without_context: str
    stop_sequences: tuple[str, ...] = ()

    def format(self, instruction: str, context: str = "") -> str:
        template = self.with_context if context.strip() else self.without_context
        return template.format(instruction=instruction, context=context)


def _alpaca(name: str, preamble: bool) -> PromptStyle:
    with_context = "### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n### Response:\n"
    without_context = "### Instruction:\n{instruction}\n\n### Response:\n"
    if preamble:
        with_context = ALPACA_PREAMBLE.format(paired=", paired with an input that provides further context") + (
            with_context
        )
        without_context = ALPACA_PREAMBLE.format(paired="") + without_context
    return PromptStyle(name, with_context, without_context, stop_sequences=("### Instruction:",))


PROMPT_STYLES: dict[str, PromptStyle] = {
    # Stanford Alpaca's template, preamble and all (about 190 characters of it).
    "alpaca": _alpaca("alpaca", preamble=True),
    # The same sections without the preamble: what a character model with a short context affords.
    "alpaca-short": _alpaca("alpaca-short", preamble=False),
    # Instruction, context and response as bare paragraphs.
    "plain": PromptStyle("plain", "{instruction}\n\n{context}\n\n", "{instruction}\n\n"),
}


def style_by_name(name: str, key: str = "data.prompt_style") -> PromptStyle:
    if name not in PROMPT_STYLES:
        raise MinigptError(f"{key}: unknown prompt style {name!r}; choose one of {', '.join(PROMPT_STYLES)}")
    return PROMPT_STYLES[name]
