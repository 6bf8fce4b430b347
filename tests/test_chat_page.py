"""The chat page at / in a real headless browser: type a prompt, see the answer stream in.

The browser is Debian's `chromium-headless-shell` (or `chromium`), driven by playwright through
`executable_path`: `playwright install` downloads browsers, which this project's machines cannot.
Without a browser the test is skipped and says how to get one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving import Server

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")
BROWSER = os.environ.get("MINIGPT_BROWSER") or next(filter(None, map(shutil.which, BROWSERS)), None)
# Nothing that reaches beyond this machine, no first-run work.
BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no headless browser: `apt-get install chromium-headless-shell` (Debian), or set MINIGPT_BROWSER "
    "to a Chromium binary",
)


@pytest.fixture(scope="module")
def server(pretrained: Path) -> Iterator[Server]:
    running = Server(pretrained, "--model_name=tiny")
    yield running
    running.stop()


@pytest.fixture
def page() -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        # launch() starts the browser on a fresh, temporary profile of its own.
        browser = playwright.chromium.launch(executable_path=BROWSER, headless=True, args=BROWSER_FLAGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


# Records every length the answer's text takes as it changes, to tell a stream from one late block.
WATCH_ANSWER = """() => {
  window.answerLengths = [];
  new MutationObserver(() => {
    const answers = document.querySelectorAll(".message.assistant");
    if (answers.length) window.answerLengths.push(answers[answers.length - 1].textContent.length);
  }).observe(document.getElementById("log"), { childList: true, subtree: true, characterData: true });
}"""


def test_a_typed_prompt_streams_its_answer_into_the_page(server: Server, page: sync_api.Page) -> None:
    page.goto(server.url)
    sync_api.expect(page.locator("#model")).to_have_text("tiny")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "120")
    page.evaluate(WATCH_ANSWER)
    page.fill("#prompt", "ROMEO:")
    page.press("#prompt", "Enter")
    sync_api.expect(page.locator(".message.assistant")).to_have_attribute("data-state", "done", timeout=60_000)

    shown = page.locator(".message.assistant").text_content()
    body = {"messages": [{"role": "user", "content": "ROMEO:"}], "temperature": 0, "max_tokens": 120}
    expected = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).json()
    assert shown == expected["choices"][0]["message"]["content"] and shown
    lengths = page.evaluate("window.answerLengths")
    assert len(set(lengths)) > 3, lengths  # the text grew piece by piece
    assert page.locator(".message.user").text_content() == "ROMEO:"
    sync_api.expect(page.locator("#stats")).to_contain_text("120 tokens")
    sync_api.expect(page.locator("#stats")).to_contain_text("tokens/s")


def test_an_error_from_the_server_is_shown_in_the_page(server: Server, page: sync_api.Page) -> None:
    page.goto(server.url)
    sync_api.expect(page.locator("#model")).to_have_text("tiny")
    page.fill("#prompt", "ROMEO: ~~~")  # '~' is not in the model's vocabulary
    page.press("#prompt", "Enter")
    error = page.locator(".message.error")
    sync_api.expect(error).to_contain_text("outside the tokenizer's vocabulary")
