"""The chat page in a real browser (Playwright + Debian's Chromium): a Korean message, a streamed answer, Stop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
MAX_TOKENS = 480


def _wait(condition, seconds: float = 20.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def page_server(serve_model_dir):
    """A server with the chat page and no API key (the page would ask for a login otherwise)."""
    from kolm.serve.server import Server

    s = Server(serve_model_dir, model_name="tiny-ko", max_tokens_cap=MAX_TOKENS).start()
    _never_ends(s.engine.model, s.engine.tokenizer)
    yield s
    s.stop()


def _never_ends(model, tokenizer) -> None:
    """A random tiny model samples an end token now and then; forbid them so that Stop always lands mid-answer.

    Only the model under the page changes: the page, the server, the stream and the cancel path are the real ones.
    """
    ends = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")} - {None, tokenizer.unk_token_id}

    def no_end(module, args, logits):
        logits[..., sorted(ends)] = float("-inf")
        return logits

    model.lm_head.register_forward_hook(no_end)


def test_chat_page_streams_a_korean_answer_and_stop_stops_the_backend(page_server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (apt-get install -y chromium fonts-nanum)")
    from playwright.sync_api import sync_playwright

    engine = page_server.engine
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760}, locale="ko-KR")
            page.goto(page_server.url + "/ui/")
            assert "kolm 대화" in page.locator("h1").first.inner_text()
            # Long answers, so that Stop lands mid-answer: max tokens up to the model's room.
            page.get_by_text("설정 (Settings)").click()
            tokens = page.get_by_label("number input for 최대 토큰 수 (Max tokens)")
            tokens.fill(str(MAX_TOKENS))
            tokens.press("Enter")
            box = page.locator("textarea").first
            box.fill("안녕하세요! 한국어로 자기소개를 해 주세요.")
            box.press("Enter")

            bot = page.locator('[data-testid="bot"]').last
            assert _wait(lambda: bot.count() > 0 and len(bot.inner_text()) > 0), "no streamed answer appeared"
            seen = [len(bot.inner_text())]
            assert _wait(lambda: seen.append(len(bot.inner_text())) or seen[-1] > seen[0]), "the answer did not grow"
            # Hold the engine between decode steps so the click is certain to land mid-answer.
            with engine.paused():
                assert engine.stats()["running"] == 1
                page.get_by_role("button", name="중지 (Stop)").click()
                page.get_by_role("button", name="보내기 (Send)").wait_for()
            assert _wait(lambda: engine.stats()["cancelled"] == 1 and engine.stats()["running"] == 0, 10)
            assert engine.stats()["completion_tokens"] < MAX_TOKENS  # it stopped before the end
            final = bot.inner_text()
            time.sleep(0.3)
            assert bot.inner_text() == final  # nothing more arrives
            page.screenshot(path=str(tmp_path / "chat.png"))
        finally:
            browser.close()
