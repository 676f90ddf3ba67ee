"""LLM-as-judge against a real local HTTP server speaking the OpenAI chat-completions shape."""

import pytest

from kolm.errors import ConfigError, KolmError
from kolm.evaluate.judge import JudgeClient, aggregate_pairwise, aggregate_rubric, judge_pair, judge_rubric


@pytest.fixture()
def client(judge_server, monkeypatch):
    monkeypatch.setenv("KOLM_TEST_JUDGE_KEY", "sk-test")
    return JudgeClient(judge_server, "judge-model", api_key_env="KOLM_TEST_JUDGE_KEY", timeout=5)


Q = "한국의 수도는 어디인가요?"
GOOD, BAD = "한국의 수도는 서울입니다.", "한국의 수도는 부산입니다."


def test_pairwise_with_position_swap(client, judge_handler):
    r = judge_pair(client, Q, GOOD, BAD)
    assert r == {"winner": "1", "verdicts": ["A", "B"], "consistent": True}
    r = judge_pair(client, Q, BAD, GOOD)
    assert r["winner"] == "2"
    req = judge_handler.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "judge-model" and req["body"]["messages"][0]["role"] == "system"
    # the swap really exchanged the answers
    second = judge_handler.requests[1]["body"]["messages"][-1]["content"]
    assert second.index(BAD) < second.index(GOOD)


def test_position_bias_becomes_tie_and_is_counted(client, judge_handler):
    judge_handler.biased = True
    results = [judge_pair(client, Q, GOOD, BAD), judge_pair(client, Q, BAD, GOOD)]
    assert [r["winner"] for r in results] == ["tie", "tie"]
    no_swap = judge_pair(client, Q, BAD, GOOD, swap=False)
    assert no_swap["winner"] == "1"  # without the swap the biased judge picks the worse answer
    agg = aggregate_pairwise(results + [judge_pair(client, Q, GOOD, GOOD, swap=False)], ("sft", "base"))
    assert agg == {
        "wins_sft": 1,
        "wins_base": 0,
        "ties": 2,
        "inconsistent": 2,
        "n": 3,
        "win_rate_sft": pytest.approx(2 / 3),
    }


def test_rubric_scores_and_aggregate(client):
    results = [
        judge_rubric(client, Q, GOOD, reference="서울"),
        judge_rubric(client, Q, BAD),
        judge_rubric(client, Q, GOOD),
    ]
    assert [r["score"] for r in results] == [5, 1, 5]
    agg = aggregate_rubric(results + [{"score": None}])
    assert agg["mean"] == pytest.approx(11 / 3) and agg["counts"] == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 2}
    assert agg["unparsed"] == 1 and agg["n"] == 4


def test_missing_api_key_is_a_config_error(judge_server, monkeypatch):
    monkeypatch.delenv("KOLM_NO_SUCH_KEY", raising=False)
    c = JudgeClient(judge_server, "m", api_key_env="KOLM_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="KOLM_NO_SUCH_KEY is not set"):
        c.chat([{"role": "user", "content": "hi"}])


def test_unreachable_endpoint_is_a_clear_error(monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    monkeypatch.setenv("KOLM_TEST_JUDGE_KEY", "x")
    c = JudgeClient(f"http://127.0.0.1:{port}/v1", "m", api_key_env="KOLM_TEST_JUDGE_KEY", timeout=2)
    with pytest.raises(KolmError, match="unreachable.*eval.judge.base_url"):
        c.chat([{"role": "user", "content": "hi"}])


def test_check_fails_fast(judge_server, monkeypatch):
    monkeypatch.setenv("KOLM_TEST_JUDGE_KEY", "x")
    JudgeClient(judge_server, "m", api_key_env="KOLM_TEST_JUDGE_KEY").check()  # reachable, key set
    with pytest.raises(ConfigError, match="not an http"):
        JudgeClient("127.0.0.1:8000", "m", api_key_env="KOLM_TEST_JUDGE_KEY").check()
    monkeypatch.delenv("KOLM_TEST_JUDGE_KEY")
    with pytest.raises(ConfigError, match="is not set"):
        JudgeClient(judge_server, "m", api_key_env="KOLM_TEST_JUDGE_KEY").check()
