"""The OpenAI-compatible API through the official `openai` client: fields, streaming, limits and errors."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest
from servekit import API_KEY, MODEL_NAME

PROMPT = "서울의 봄은"
MESSAGES = [{"role": "system", "content": "친절하게 답하세요."}, {"role": "user", "content": "안녕하세요"}]


def _wait(condition, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_models_health_and_metrics(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL_NAME]
    assert client.models.retrieve(MODEL_NAME).owned_by == "kolm"
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=3)
    text = httpx.get(server.url + "/metrics").text
    for name in (
        "kolm_requests_total",
        "kolm_generation_tokens_total",
        "kolm_queue_depth",
        "kolm_time_to_first_token_seconds_bucket",
        "kolm_request_latency_seconds_bucket",
    ):
        assert name in text
    assert 'endpoint="/v1/completions",status="200"' in text


def test_health_is_503_while_loading(serve_model_dir):
    from kolm.serve.server import Server

    s = Server(serve_model_dir, ui=False).start(load=False)
    try:
        assert httpx.get(s.url + "/health").status_code == 503
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "x"})
        assert r.status_code == 503 and set(r.json()["error"]) == {"message", "type", "param", "code"}
        s.load()
        assert httpx.get(s.url + "/health").status_code == 200
    finally:
        s.stop()


def test_chat_and_completion_with_usage(client):
    chat = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=12, temperature=0)
    choice = chat.choices[0]
    assert chat.object == "chat.completion" and choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert chat.usage.completion_tokens == 12 and chat.usage.total_tokens == chat.usage.prompt_tokens + 12
    # max_completion_tokens is the newer name of the same limit
    newer = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_completion_tokens=12, temperature=0)
    assert newer.choices[0].message.content == choice.message.content

    done = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=10, temperature=0)
    assert done.object == "text_completion" and done.choices[0].text and done.usage.completion_tokens == 10


def test_streams_equal_full_responses_and_report_usage(client):
    full = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=16, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16
    assert all(c.usage is None for c in chunks[:-1])

    plain = list(client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=9, temperature=0, stream=True))
    whole = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=9, temperature=0)
    assert "".join(c.choices[0].text for c in plain) == whole.choices[0].text
    assert all(c.usage is None for c in plain)  # usage only when asked for


def test_stop_strings_cut_text_stream_and_full(client):
    base = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=30, temperature=0).choices[0].text
    stop = next(base[i : i + 2] for i in range(4, len(base) - 2) if "\ufffd" not in base[i : i + 2])
    expected = base[: base.index(stop)]
    cut = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=30, temperature=0, stop=[stop])
    assert cut.choices[0].text == expected and cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=MODEL_NAME, prompt=PROMPT, max_tokens=30, temperature=0, stop=stop, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_seed_makes_sampling_reproducible(client):
    def sample(seed: int) -> str:
        r = client.chat.completions.create(
            model=MODEL_NAME, messages=MESSAGES, max_tokens=24, temperature=1.0, top_p=0.95, seed=seed
        )
        return r.choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_n_choices_and_logprobs(client):
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=8, temperature=1.0, seed=3, n=2, logprobs=True, top_logprobs=3
    )
    assert [c.index for c in r.choices] == [0, 1] and r.usage.completion_tokens == 16
    content = r.choices[0].logprobs.content
    assert len(content) == 8 and all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)
    assert bytes(b for t in content for b in t.bytes).decode("utf-8", "replace") == r.choices[0].message.content

    c = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=2)
    lp = c.choices[0].logprobs
    # the legacy format keys alternatives by text, so two half-syllable tokens ("\ufffd") share one key
    assert len(lp.tokens) == 5 and all(1 <= len(t) <= 2 for t in lp.top_logprobs) and lp.text_offset[0] == 0


def test_unsupported_and_unknown_fields_are_400(server, client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, presence_penalty=0.5)
    assert err.value.code == "unsupported_parameter" and err.value.param == "presence_penalty"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, extra_body={"min_p": 0.1})
    assert err.value.param == "min_p"
    # a neutral value asks for nothing and is accepted
    client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2, presence_penalty=0, echo=False)
    raw = httpx.post(
        server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": MODEL_NAME, "messages": MESSAGES, "tools": [{"type": "function"}]},
    )
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4o", prompt=PROMPT)


def test_wrong_or_missing_key_is_401(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as err:
            bad.models.list()
    assert err.value.code == "invalid_api_key"
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200  # health and metrics stay open


def test_limits_are_400_and_413(server, client):
    long_prompt = "오늘은 날씨가 맑고 바람이 시원하다. " * 60  # far beyond the 512-token context
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL_NAME, prompt=long_prompt, max_tokens=4)
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=500)  # server cap 480
    assert err.value.param == "max_tokens"
    big = httpx.post(
        server.url + "/v1/completions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        content=b'{"prompt": "' + b"a" * (2 << 20) + b'"}',
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


def test_queue_full_is_429_with_retry_after(serve_model_dir):
    from kolm.serve.server import Server

    s = Server(serve_model_dir, model_name="q", max_batch=1, max_queue=1, ui=False).start()
    results: list[str] = []
    try:
        with openai.OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0, timeout=60) as c:
            with s.engine.paused():  # the worker holds between steps, so the first request stays queued
                waiting = threading.Thread(
                    target=lambda: results.append(c.completions.create(model="q", prompt="x", max_tokens=3).id)
                )
                waiting.start()
                assert _wait(lambda: s.engine.stats()["waiting"] == 1)
                with pytest.raises(openai.RateLimitError) as err:
                    c.completions.create(model="q", prompt="x", max_tokens=3)
                assert err.value.response.headers["retry-after"] == "1"
            waiting.join(30)
        assert len(results) == 1  # the queued request was served once the worker resumed
    finally:
        s.stop()


def test_client_disconnect_frees_its_row(server, client):
    engine = server.engine
    before = engine.stats()["cancelled"]
    stream = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=480, stream=True)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    assert _wait(lambda: engine.stats()["cancelled"] == before + 1)
    assert _wait(lambda: engine.stats()["running"] == 0 and engine.stats()["waiting"] == 0)
