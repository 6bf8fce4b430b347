"""`minigpt serve` as its users meet it: a live server on a free localhost port, spoken to with the
official `openai` client (and raw HTTP for what a client library would refuse to send)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import REPO, tiny_fit_args
from serving import Server

from minigpt.cli import main

openai = pytest.importorskip("openai")

# Every test here talks to a server process that the fixtures start.
pytestmark = pytest.mark.slow

CHECKOUT_ENV = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # as the server runs (tests/serving.py)
PROMPTS = ["ROMEO:", "JULIET:\nO Romeo", "But soft, what light through yonder", "N", "MERCUTIO:\nA plague", "NURSE:"]


def minigpt_generate(checkpoint: Path, prompt: str, *options: str) -> str:
    """What `minigpt generate` prints after the prompt it echoes (a plain model's output)."""
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", "generate", f"--ckpt_path={checkpoint}", f"--prompt={prompt}", *options],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **CHECKOUT_ENV},
        timeout=300,
    )
    assert result.stdout.startswith(prompt)
    return result.stdout.removeprefix(prompt).removesuffix("\n")


@pytest.fixture(scope="module")
def server(pretrained: Path) -> Iterator[Server]:
    running = Server(pretrained, "--model_name=tiny", "--max_rows=8", "--max_tokens=100000", "--max_body_bytes=20000")
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_greedy_completions_equal_minigpt_generate_token_for_token(client: openai.OpenAI, pretrained: Path) -> None:
    # 70 tokens run past the 32-token context, so the window slides on the way.
    for prompt in ("ROMEO:", "JULIET:\nO Romeo, "):
        answer = client.completions.create(model="tiny", prompt=prompt, max_tokens=70, temperature=0)
        expected = minigpt_generate(pretrained, prompt, "--temperature=0", "--max_new_tokens=70")
        assert answer.choices[0].text == expected
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens == 70 and answer.usage.prompt_tokens == len(prompt)
        assert answer.model == "tiny" and answer.object == "text_completion"


def test_a_seed_gives_what_minigpt_generate_gives_with_that_seed(client: openai.OpenAI, pretrained: Path) -> None:
    answer = client.completions.create(model="tiny", prompt="NURSE:", max_tokens=50, temperature=1.0, seed=11)
    expected = minigpt_generate(pretrained, "NURSE:", "--temperature=1.0", "--seed=11", "--max_new_tokens=50")
    assert answer.choices[0].text == expected


def test_streamed_text_is_the_whole_answer_and_ends_with_usage(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=40, temperature=0)
    chunks = list(
        client.completions.create(
            model="tiny",
            prompt="ROMEO:",
            max_tokens=40,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = [chunk.choices[0].text for chunk in chunks if chunk.choices]
    assert len(texts) > 5  # piece by piece, not one block
    assert "".join(texts) == whole.choices[0].text
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 40
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_the_stream_ends_with_done(server: Server) -> None:
    body = {"prompt": "ROMEO:", "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(line.removeprefix("data: "))["object"] == "text_completion" for line in events[:-1])


def test_n_choices_each_draw_with_seed_plus_their_index(client: openai.OpenAI) -> None:
    many = client.completions.create(model="tiny", prompt="JULIET:", max_tokens=30, temperature=1.0, n=3, seed=5)
    assert [choice.index for choice in many.choices] == [0, 1, 2]
    for index, choice in enumerate(many.choices):
        alone = client.completions.create(
            model="tiny", prompt="JULIET:", max_tokens=30, temperature=1.0, seed=5 + index
        )
        assert choice.text == alone.choices[0].text
    assert len({choice.text for choice in many.choices}) > 1
    assert many.usage.completion_tokens == sum(
        len(choice.text) for choice in many.choices
    )  # a character model: one token per character, none stopped early


def test_a_stop_sequence_ends_the_answer_before_it(client: openai.OpenAI, pretrained: Path) -> None:
    answer = client.completions.create(model="tiny", prompt="ROMEO:\n", max_tokens=80, temperature=0, stop=["\n", "zz"])
    expected = minigpt_generate(pretrained, "ROMEO:\n", "--temperature=0", "--max_new_tokens=80", "--stop=\n")
    assert answer.choices[0].text == expected
    assert "\n" not in answer.choices[0].text and answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens < 80


def test_chat_with_a_plain_model_continues_the_message_as_a_completion_would(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "ROMEO:"}], max_tokens=40, temperature=0
    )
    completion = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=40, temperature=0)
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == completion.choices[0].text
    assert chat.object == "chat.completion" and chat.usage.prompt_tokens == len("ROMEO:")
    streamed = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "ROMEO:"}], max_tokens=40, temperature=0, stream=True
    )
    chunks = list(streamed)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == completion.choices[0].text


def test_eight_concurrent_requests_get_what_eight_sequential_ones_get(server: Server, client: openai.OpenAI) -> None:
    requests = [
        {
            "prompt": PROMPTS[index % len(PROMPTS)],
            "max_tokens": 40 + 7 * index,
            "temperature": 0.0 if index % 2 else 0.9,
        }
        | ({"seed": 100 + index} if index % 2 == 0 else {})
        for index in range(8)
    ]

    def complete(request: dict) -> str:
        return client.completions.create(model="tiny", **request).choices[0].text

    sequential = [complete(request) for request in requests]
    before = server.health()
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(complete, requests))
    after = server.health()
    assert concurrent == sequential
    # Generated together: many tokens per forward pass (one at a time makes one each).
    tokens = after["tokens_generated"] - before["tokens_generated"]
    assert tokens / (after["forward_passes"] - before["forward_passes"]) > 2


def test_a_client_that_disconnects_mid_stream_frees_its_row(server: Server) -> None:
    body = {"prompt": "ROMEO:", "max_tokens": 100000, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        assert server.health()["rows"] == 1
    # 100000 tokens would take minutes; the row goes as soon as the server sees the client gone.
    server.wait_for(lambda health: health["rows"] == 0, timeout=20)


def test_models_and_health(client: openai.OpenAI, server: Server) -> None:
    assert [model.id for model in client.models.list()] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    assert server.health()["status"] == "ok"


BAD_REQUESTS = [
    ("completions", {"prompt": "ROMEO:", "model": "gpt-4"}, 404, "model"),
    ("completions", {"prompt": "ROMEO:", "max_tokens": 0}, 400, "max_tokens"),
    ("completions", {"prompt": "ROMEO:", "max_tokens": -3}, 400, "max_tokens"),
    ("completions", {"prompt": "ROMEO:", "max_tokens": 100001}, 400, "max_tokens"),
    ("completions", {"prompt": "ROMEO:", "temperature": -0.5}, 400, "temperature"),
    ("completions", {"prompt": "ROMEO:", "top_p": 0}, 400, "top_p"),
    ("completions", {"prompt": "ROMEO:", "top_p": 1.5}, 400, "top_p"),
    ("completions", {"prompt": ""}, 400, "prompt"),
    ("completions", {"prompt": ["ROMEO:", ""]}, 400, "prompt"),
    ("completions", {"prompt": "ROMEO: #@$%"}, 400, "prompt"),
    ("completions", {"prompt": 42}, 400, "prompt"),
    ("completions", {}, 400, "prompt"),
    ("completions", {"prompt": "ROMEO:", "stop": 3}, 400, "stop"),
    ("completions", {"prompt": "ROMEO:", "n": 0}, 400, "n"),
    ("completions", {"prompt": "ROMEO:", "n": 9}, 400, "n"),
    ("completions", {"prompt": "ROMEO:", "logprobs": 3}, 400, "logprobs"),
    ("completions", {"prompt": "ROMEO:", "frequency_penalty": 0.5}, 400, "frequency_penalty"),
    ("completions", {"prompt": "ROMEO:", "top_k": -2}, 400, "top_k"),
    ("completions", {"prompt": "ROMEO:", "repetition_penalty": 0}, 400, "repetition_penalty"),
    ("completions", {"prompt": "ROMEO:", "seed": 2**64}, 400, "seed"),
    ("chat/completions", {"messages": []}, 400, "messages"),
    ("chat/completions", {"messages": [{"content": "hi"}]}, 400, "messages.0.role"),
    ("chat/completions", {"messages": [{"role": "user", "content": "ROMEO: ~~~"}]}, 400, "messages"),
    ("chat/completions", {"messages": [{"role": "user", "content": ""}]}, 400, "messages"),
    ("chat/completions", {"messages": "ROMEO:"}, 400, "messages"),
    (
        "chat/completions",
        {"messages": [{"role": "user", "content": "R"}], "max_completion_tokens": 0},
        400,
        "max_completion_tokens",
    ),
]


@pytest.mark.parametrize(("endpoint", "body", "status", "param"), BAD_REQUESTS)
def test_a_bad_request_gets_openais_error_naming_the_field(
    server: Server, endpoint: str, body: dict, status: int, param: str
) -> None:
    response = httpx.post(f"{server.url}/v1/{endpoint}", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"prompt": "ROMEO:", ', "not valid JSON"),
        (b"", "empty"),
        (b'["ROMEO:"]', "must be a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_a_body_that_is_not_a_json_object_gets_400(server: Server, content: bytes, message: str) -> None:
    response = httpx.post(f"{server.url}/v1/completions", content=content, timeout=60)
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_a_body_over_the_size_limit_gets_413_and_the_server_lives_on(server: Server, client: openai.OpenAI) -> None:
    response = httpx.post(f"{server.url}/v1/completions", json={"prompt": "ROMEO: " * 5000}, timeout=60)
    assert response.status_code == 413
    assert "--max_body_bytes" in response.json()["error"]["message"]
    assert server.process.poll() is None
    assert client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=3).usage.completion_tokens == 3


def test_the_openai_client_sees_unknown_models_and_bad_values_as_its_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.completions.create(model="gpt-4", prompt="ROMEO:")
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tiny", prompt="ROMEO:", temperature=-1)


def test_an_api_key_guards_every_endpoint_but_health_and_the_page(pretrained: Path) -> None:
    server = Server(pretrained, "--model_name=tiny", env={"MINIGPT_API_KEY": "s3cret"})
    try:
        wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="guess", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.models.list()
        assert caught.value.status_code == 401
        assert caught.value.body["code"] == "invalid_api_key"
        for path in ("/v1/models", "/v1/completions", "/v1/chat/completions"):
            response = httpx.post(f"{server.url}{path}", json={}) if "compl" in path else httpx.get(server.url + path)
            assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert httpx.get(f"{server.url}/").status_code == 200
        right = openai.OpenAI(base_url=f"{server.url}/v1", api_key="s3cret", max_retries=0)
        assert right.completions.create(model="tiny", prompt="ROMEO:", max_tokens=4).usage.completion_tokens == 4
    finally:
        server.stop()


def test_a_request_past_the_queue_limit_gets_429(pretrained: Path) -> None:
    server = Server(pretrained, "--max_rows=1", "--max_queue=1", "--max_tokens=100000")
    try:
        endless = {"prompt": "ROMEO:", "max_tokens": 100000, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=endless, timeout=60) as running:
            lines = running.iter_lines()  # held open: dropping the iterator would close the stream
            assert next(lines).startswith("data: ")
            with ThreadPoolExecutor(max_workers=1) as pool:
                waiting = pool.submit(
                    httpx.post, f"{server.url}/v1/completions", json={"prompt": "JULIET:", "max_tokens": 3}, timeout=60
                )
                server.wait_for(lambda health: health["queued"] == 1)
                refused = httpx.post(f"{server.url}/v1/completions", json={"prompt": "NURSE:"}, timeout=60)
                assert refused.status_code == 429
                assert refused.json()["error"]["type"] == "rate_limit_error"
                assert "--max_queue" in refused.json()["error"]["message"]
                running.close()  # the endless answer's client goes: the waiting request gets its row
                assert waiting.result(timeout=60).status_code == 200
    finally:
        server.stop()


def test_serving_beyond_localhost_without_a_key_warns(pretrained: Path) -> None:
    server = Server(pretrained, "--host=0.0.0.0")
    try:
        assert "listens beyond this machine and no --api_key" in server.output()
    finally:
        server.stop()


def test_serve_help_and_bad_limits_answer_without_a_traceback() -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "minigpt", "serve", *args]
        env = {**os.environ, **CHECKOUT_ENV}
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    assert "--max_rows" in run("--help").stdout
    bad = run("--ckpt_path=x.ckpt", "--max_rows=0")
    assert bad.returncode == 2 and bad.stderr.strip() == "minigpt: error: --max_rows must be 1 or more, got 0"


def test_a_bigram_checkpoint_is_refused_in_one_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    main(tiny_fit_args(corpus, max_steps=3, **{"model.arch": "bigram", "model.learning_rate": 0.05}))
    bigram = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        main(["serve", f"--ckpt_path={bigram}"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"minigpt: error: --ckpt_path: {bigram} holds a bigram model; minigpt serve batches GPT models "
        "through their KV cache, so give a GPT checkpoint"
    )
