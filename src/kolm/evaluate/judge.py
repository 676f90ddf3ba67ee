"""LLM-as-judge through any OpenAI-compatible chat-completions endpoint.

Two modes:
- pairwise: "which answer is better, A or B?". Judges favour the first (or
  second) position, so with `swap` every pair is asked twice with the answers
  exchanged; a win counts only when both orders agree, otherwise it is a tie
  (the disagreement is counted as `inconsistent`, a measure of position bias).
- rubric: a 1–5 score of one answer against a Korean rubric (and the reference
  answer when there is one).

The HTTP call uses only `urllib.request` (no client library to install). The
API key is read from the environment variable named in the config, at call
time, never stored in the run directory.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kolm.errors import ConfigError, KolmError

__all__ = [
    "JudgeClient",
    "judge_pair",
    "judge_rubric",
    "aggregate_pairwise",
    "aggregate_rubric",
    "PAIRWISE_PROMPT",
    "RUBRIC_PROMPT",
]

SYSTEM = "당신은 한국어 답변의 품질을 공정하게 평가하는 심사위원입니다. 답변의 길이나 순서에 영향을 받지 마세요."

PAIRWISE_PROMPT = """다음 질문에 대한 두 답변을 비교하세요.
평가 기준: 정확성, 질문과의 관련성, 유용성, 한국어의 자연스러움.

[질문]
{question}

[답변 A]
{a}

[답변 B]
{b}

더 나은 답변을 고르세요. 마지막 줄에 반드시 "판정: A", "판정: B" 또는 "판정: 무승부" 중 하나만 쓰세요."""

RUBRIC_PROMPT = """다음 질문에 대한 답변을 1점부터 5점까지 평가하세요.
5점: 정확하고 완전하며 자연스러운 한국어
4점: 대체로 정확하고 유용하나 사소한 문제가 있음
3점: 부분적으로 맞거나 불완전함
2점: 대부분 틀리거나 관련성이 낮음
1점: 틀렸거나 질문과 무관하거나 읽기 어려움

[질문]
{question}
{reference_block}
[답변]
{answer}

마지막 줄에 반드시 "점수: N" (N은 1~5의 정수) 형식으로 쓰세요."""


@dataclass
class JudgeClient:
    """Minimal chat-completions client: POST {base_url}/chat/completions."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    temperature: float = 0.0

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env) if self.api_key_env else "none"
        if not key:
            raise ConfigError(
                f"eval.judge.api_key_env: environment variable {self.api_key_env} is not set; "
                f"export {self.api_key_env}=... (any value for a local server) or name another variable"
            )
        return key

    def check(self) -> None:
        """Fail fast, before any model work: the key is set and something listens at base_url."""
        import socket
        import urllib.parse

        self.api_key()
        url = urllib.parse.urlparse(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"eval.judge.base_url: {self.base_url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)"
            )
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=min(self.timeout, 10.0)).close()
        except OSError as exc:
            raise KolmError(
                f"judge endpoint {self.base_url} is unreachable ({exc}); start the server or fix eval.judge.base_url"
            ) from None

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The assistant message content of one completion."""
        key = self.api_key()
        url = self.base_url.rstrip("/") + "/chat/completions"
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature}).encode("utf-8")
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            raise KolmError(
                f"judge endpoint {url} answered HTTP {exc.code}: {detail}; check eval.judge.model and the API key"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KolmError(
                f"judge endpoint {url} is unreachable ({reason}); start the server or fix eval.judge.base_url"
            ) from None
        except json.JSONDecodeError:
            raise KolmError(f"judge endpoint {url} did not return JSON; is it an OpenAI-compatible server?") from None
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise KolmError(f"judge endpoint {url} returned no choices[0].message.content: {str(data)[:200]}") from None


def _parse_verdict(text: str) -> str:
    """'A', 'B' or 'tie' from the judge's reply (the last 판정/verdict line wins)."""
    found = re.findall(r"(?:판정|verdict)\s*[:：]\s*\**\s*(A|B|무승부|tie)", text, flags=re.IGNORECASE)
    if not found:
        found = re.findall(r"\b(A|B)\b", text.strip().splitlines()[-1] if text.strip() else "")
    if not found:
        return "tie"
    v = found[-1].upper() if found[-1].upper() in ("A", "B") else "tie"
    return v


def judge_pair(client: JudgeClient, question: str, answer_1: str, answer_2: str, swap: bool = True) -> dict[str, Any]:
    """Compare two answers; returns winner '1', '2' or 'tie', plus the raw verdicts per order."""

    def ask(a: str, b: str) -> str:
        msg = PAIRWISE_PROMPT.format(question=question, a=a, b=b)
        return _parse_verdict(client.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": msg}]))

    first = ask(answer_1, answer_2)  # answer_1 in position A
    v1 = {"A": "1", "B": "2"}.get(first, "tie")
    if not swap:
        return {"winner": v1, "verdicts": [first], "consistent": True}
    second = ask(answer_2, answer_1)  # answer_1 now in position B
    v2 = {"A": "2", "B": "1"}.get(second, "tie")
    winner = v1 if v1 == v2 else "tie"
    return {"winner": winner, "verdicts": [first, second], "consistent": v1 == v2}


def _parse_score(text: str) -> int | None:
    found = re.findall(r"(?:점수|score)\s*[:：]\s*\**\s*([1-5])", text, flags=re.IGNORECASE)
    return int(found[-1]) if found else None


def judge_rubric(client: JudgeClient, question: str, answer: str, reference: str | None = None) -> dict[str, Any]:
    """A 1-5 rubric score (None when the reply has no parsable score)."""
    ref = f"\n[참고 답안]\n{reference}\n" if reference else ""
    msg = RUBRIC_PROMPT.format(question=question, answer=answer, reference_block=ref)
    reply = client.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": msg}])
    return {"score": _parse_score(reply), "reply": reply}


def aggregate_pairwise(results: list[dict[str, Any]], names: tuple[str, str] = ("1", "2")) -> dict[str, Any]:
    """Counts of wins/ties, the win rate of the first system (ties count half) and inconsistent verdicts."""
    c = Counter(r["winner"] for r in results)
    n = len(results)
    return {
        f"wins_{names[0]}": c["1"],
        f"wins_{names[1]}": c["2"],
        "ties": c["tie"],
        "inconsistent": sum(1 for r in results if not r.get("consistent", True)),
        "n": n,
        f"win_rate_{names[0]}": (c["1"] + 0.5 * c["tie"]) / n if n else 0.0,
    }


def aggregate_rubric(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean score, a histogram of scores 1-5, and how many replies had no score."""
    scores = [r["score"] for r in results if r.get("score") is not None]
    hist = Counter(scores)
    return {
        "mean": sum(scores) / len(scores) if scores else None,
        "counts": {str(s): hist.get(s, 0) for s in range(1, 6)},
        "unparsed": len(results) - len(scores),
        "n": len(results),
    }
