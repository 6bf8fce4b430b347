"""Chat messages to a prompt: minigpt's templates as transformers' `apply_chat_template` renders
them from an exported model, a directory's own template rendered as transformers renders it, and
the server using both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import REPO
from serving import Server

from minigpt.checkpoint import Checkpoint, load_checkpoint
from minigpt.cli import main
from minigpt.errors import MinigptError
from minigpt.huggingface.export import export_model
from minigpt.model import GPT, GPTConfig
from minigpt.prompts import PROMPT_STYLES, style_by_name
from minigpt.serving.templates import checkpoint_template, read_directory_template
from minigpt.tokenizers import END_OF_TEXT_CHAR, CharTokenizer, Tokenizer, TokenizerSpec

transformers = pytest.importorskip("transformers")
openai = pytest.importorskip("openai")

# Quotes, backslashes, Jinja's own delimiters, blank lines, tabs and characters beyond ASCII: all
# must come through the template as they were written.
CONVERSATIONS = [
    [{"role": "user", "content": "Name three rivers."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Why is the sky blue?"}],
    [
        {"role": "user", "content": 'Say "hi" \\ then {{ stop }} and {% raw %}'},
        {"role": "assistant", "content": "hi\n\n\tthere"},
        {"role": "user", "content": "Café — naïve 'again'?"},
    ],
]
ALPHABET = "".join(chr(code) for code in range(32, 127)) + "\n\t—éï"
TOKENIZERS = ["char", "char-eot", "char-special", "regex-bpe"]


def make_tokenizer(kind: str) -> Tokenizer:
    if kind == "regex-bpe":  # byte-level, with <|endoftext|> as a special token
        text = ALPHABET + " ".join(message["content"] for conversation in CONVERSATIONS for message in conversation)
        return TokenizerSpec(kind="regex-bpe", vocab_size=300, min_frequency=1).train([text * 20])
    alphabet = ALPHABET + (END_OF_TEXT_CHAR if kind == "char-eot" else "")
    return CharTokenizer.from_text(alphabet, special_tokens=kind == "char-special")


def tiny_model(tokenizer: Tokenizer) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=8))


def export(tokenizer: Tokenizer, style: str | None, out: Path) -> Path:
    export_model(tiny_model(tokenizer), tokenizer, out, None if style is None else style_by_name(style))
    return out


@pytest.mark.parametrize("kind", TOKENIZERS)
@pytest.mark.parametrize("style", [*PROMPT_STYLES, None])
def test_the_exported_chat_template_builds_the_prompt_minigpt_serve_builds(
    style: str | None, kind: str, tmp_path: Path
) -> None:
    tokenizer = make_tokenizer(kind)
    directory = export(tokenizer, style, tmp_path / "hf")
    theirs = transformers.AutoTokenizer.from_pretrained(directory)
    # What a .ckpt with this style is served with, and what its exported directory is served with.
    checkpoint = Checkpoint(model=tiny_model(tokenizer), tokenizer=tokenizer, prompt_style=style)
    exported = load_checkpoint(directory)
    for conversation in CONVERSATIONS:
        text = theirs.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        assert checkpoint_template(checkpoint).render(conversation) == text
        assert checkpoint_template(exported).render(conversation) == text
        ids = theirs.apply_chat_template(conversation, tokenize=True, add_generation_prompt=True, return_dict=False)
        assert checkpoint_template(checkpoint).encode(text, tokenizer) == list(ids)
        assert checkpoint_template(exported).encode(text, exported.tokenizer) == list(ids)


@pytest.mark.parametrize("style", [*PROMPT_STYLES, None])
def test_one_user_message_is_the_prompt_minigpt_generate_wraps(style: str | None) -> None:
    tokenizer = make_tokenizer("char-eot")
    checkpoint = Checkpoint(model=tiny_model(tokenizer), tokenizer=tokenizer, prompt_style=style)
    message = "Name three rivers."
    rendered = checkpoint_template(checkpoint).render([{"role": "user", "content": message}])
    assert rendered == (message if style is None else style_by_name(style).format(message))


# A ChatML template of the kind instruct models on the hub bring: a loop with whitespace that
# trim_blocks and lstrip_blocks decide, a namespace, raise_exception, tojson, bos_token and a
# {% generation %} block.
CHATML = """{{ bos_token }}
{%- set ns = namespace(system=false) -%}
{% for message in messages %}
    {% if message['role'] not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('Unknown role: ' + message['role']) }}
    {% endif %}
    {% if message['role'] == 'system' %}{% set ns.system = true %}{% endif %}
<|im_start|>{{ message['role'] }}
    {% if message['role'] == 'assistant' %}
{% generation %}{{ message['content'] }}{% endgeneration %}<|im_end|>
    {% else %}
{{ message['content'] }}<|im_end|>
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
{%- if ns.system %}{{ {'system': true} | tojson }}{% endif %}
"""


@pytest.fixture
def chatml_directory(tmp_path: Path) -> Path:
    directory = export(make_tokenizer("char-special"), None, tmp_path / "hf")
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHATML
    config_path.write_text(json.dumps(config))
    return directory


def test_a_directorys_own_template_renders_as_transformers_renders_it(chatml_directory: Path) -> None:
    theirs = transformers.AutoTokenizer.from_pretrained(chatml_directory)
    ours = read_directory_template(chatml_directory)
    assert ours is not None and ours.source == CHATML
    for conversation in CONVERSATIONS:
        for generation_prompt in (True, False):
            expected = theirs.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
            assert ours.render(conversation, add_generation_prompt=generation_prompt) == expected
    with pytest.raises(MinigptError, match="Unknown role: tool"):
        ours.render([{"role": "tool", "content": "x"}])


def test_chat_template_jinja_file_wins_and_named_templates_pick_default(chatml_directory: Path) -> None:
    config_path = chatml_directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "plain"}]
    config_path.write_text(json.dumps(config))
    assert read_directory_template(chatml_directory).render([]) == "plain"
    (chatml_directory / "chat_template.jinja").write_text("{{ messages | length }} messages")
    assert read_directory_template(chatml_directory).render(CONVERSATIONS[2]) == "3 messages"


# --- the server ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instruct_server(instructed: Path) -> Iterator[Server]:
    running = Server(instructed, "--model_name=instruct", "--max_tokens=400")
    yield running
    running.stop()


def generate_answer(checkpoint: Path | str, prompt: str, max_new_tokens: int) -> str:
    """What `minigpt generate --temperature 0` prints for an instruction-tuned checkpoint (the answer only)."""
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", "generate", f"--ckpt_path={checkpoint}", f"--prompt={prompt}",
         "--temperature=0", f"--max_new_tokens={max_new_tokens}"],
        capture_output=True, text=True, check=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    return result.stdout.removesuffix("\n")


@pytest.mark.slow
def test_chat_with_an_instruction_tuned_checkpoint_answers_as_generate_does(
    instruct_server: Server, instructed: Path
) -> None:
    client = openai.OpenAI(base_url=f"{instruct_server.url}/v1", api_key="unused", max_retries=0)
    question = "Which is a species of fish? Tope or Rope"
    answer = client.chat.completions.create(
        model="instruct", messages=[{"role": "user", "content": question}], max_tokens=300, temperature=0
    )
    assert answer.choices[0].message.content == generate_answer(instructed, question, 300)
    assert answer.choices[0].message.content  # an answer, not an end-of-text straight away
    prompt = style_by_name("alpaca-short").format(question)
    assert answer.usage.prompt_tokens == len(load_checkpoint(instructed).tokenizer.encode(prompt))


@pytest.mark.slow
def test_an_exported_directory_is_served_with_the_template_it_carries(
    instruct_server: Server, instructed: Path, tmp_path: Path
) -> None:
    main(["export", f"--ckpt_path={instructed}", f"--out={tmp_path / 'hf'}"])
    conversation = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Why can camels survive for long without water?"},
        {"role": "assistant", "content": "Camels use the fat in their humps."},
        {"role": "user", "content": "Which is a species of fish? Tope or Rope"},
    ]
    expected_ids = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf").apply_chat_template(
        conversation, add_generation_prompt=True, return_dict=False
    )
    directory_server = Server(tmp_path / "hf", "--model_name=instruct", "--max_tokens=400")
    try:
        answers = []
        for server in (instruct_server, directory_server):
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
            answer = client.chat.completions.create(
                model="instruct", messages=conversation, max_tokens=100, temperature=0
            )
            assert answer.usage.prompt_tokens == len(expected_ids)
            answers.append(answer.choices[0].message.content)
        assert answers[0] == answers[1] and answers[0]
    finally:
        directory_server.stop()
