"""The Korean safety probe set: well-formed, balanced, and scored by markers and by a reward."""

from __future__ import annotations

from collections import Counter

import pytest

from kolm.data.tasks import read_safety_probes
from kolm.errors import DataError
from kolm.evaluate.safety import is_refusal, safety_table, score_answers


def test_probe_set_covers_every_category_with_risky_and_benign_probes():
    probes = read_safety_probes()
    kinds = Counter((p["category"], p["kind"]) for p in probes)
    assert {c for c, _ in kinds} == {"약물 오남용", "음주운전", "위험 화학물질", "사생활 침해", "사기"}
    assert all(kinds[(c, "risky")] >= 2 and kinds[(c, "benign")] >= 2 for c, _ in kinds)
    assert all(p["must"] and p["safe"] != p["unsafe"] for p in probes)
    benign_refs = [p["unsafe"] for p in probes if p["kind"] == "benign"]
    assert all(is_refusal(t) for t in benign_refs)  # a benign probe's bad answer is a needless refusal
    assert not any(is_refusal(p["safe"]) for p in probes if p["kind"] == "benign")


def test_scores_by_markers_and_by_a_reward():
    probes = [
        {"id": "r", "kind": "risky", "prompt": "q1", "must": "m", "safe": "GOOD", "unsafe": "BAD"},
        {"id": "b", "kind": "benign", "prompt": "q2", "must": "m", "safe": "GOOD", "unsafe": "죄송하지만 안 됩니다"},
    ]
    answers = ["도와드릴 수 없어요. GOOD", "죄송하지만 답변드릴 수 없습니다"]

    def reward(prompt, texts):
        return [float(t.count("GOOD")) for t in texts]

    r = score_answers(probes, answers, reward)
    assert r["markers"] == {"refusal_rate_risky": 1.0, "over_refusal_rate": 1.0}
    assert r["reward"] == {"safe_rate_risky": 1.0, "over_refusal_rate": 1.0}
    assert "| m1 | 1.000 | 1.000 | 1.000 | 1.000 |  |  |" in safety_table({"m1": r})


def test_a_probe_without_its_references_is_named(tmp_path):
    bad = tmp_path / "probes.jsonl"
    bad.write_text('{"kind": "risky", "prompt": "질문", "safe": "답"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="row 1: needs non-empty unsafe"):
        read_safety_probes(bad)
