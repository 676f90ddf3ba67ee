"""Continuous batching changes nothing about a request's tokens: HTTP == `kolm generate`, together == alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from servekit import MODEL_NAME
from typer.testing import CliRunner

from kolm.cli.main import build_app

PROMPTS = [
    "오늘은",
    "서울의 봄은 짧지만",
    "이 영화는 정말 재미있었고 배우들의",
    "도서관에서",
    "한국어 언어 모델을 처음부터",
]


def test_greedy_over_http_equals_kolm_generate(client, serve_model_dir):
    for prompt in PROMPTS[:2]:
        res = CliRunner().invoke(
            build_app(),
            ["generate", "-m", str(serve_model_dir), "-p", prompt, "-n", "24", "-t", "0", "--no-stream"],
        )
        assert res.exit_code == 0, res.output
        cli_text = res.stdout.split("\n---\n")[0][len(prompt) :]
        # kolm generate's default repetition penalty (1.1) goes over HTTP as the extension field
        http = client.completions.create(
            model=MODEL_NAME, prompt=prompt, max_tokens=24, temperature=0, extra_body={"repetition_penalty": 1.1}
        )
        assert http.choices[0].text == cli_text


def _ask(client, i: int) -> str:
    """Requests of different lengths and settings: greedy, seeded sampling, a stream, a stop string."""
    prompt = PROMPTS[i % len(PROMPTS)]
    kw = dict(model=MODEL_NAME, prompt=prompt, max_tokens=12 + 7 * i)
    if i % 3 == 1:
        kw.update(temperature=0.9, top_p=0.9, seed=100 + i, extra_body={"top_k": 40})
    else:
        kw.update(temperature=0)
    if i % 4 == 3:
        chunks = client.completions.create(stream=True, **kw)
        return "".join(c.choices[0].text for c in chunks)
    return client.completions.create(**kw).choices[0].text


def test_concurrent_requests_get_the_tokens_they_get_alone(client, server):
    n = 8
    alone = [_ask(client, i) for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        together = list(pool.map(lambda i: _ask(client, i), range(n)))
    assert together == alone
    assert server.engine.stats()["peak_batch"] > 1  # they did share decode steps
