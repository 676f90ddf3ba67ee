"""Perplexity and bits per character/byte from summed NLLs, against hand-computed values."""

import math

import pytest

from kolm.metrics.lm import LMScore, bits, perplexity_of


def test_hand_computed_scores():
    score = LMScore()
    score.add(nll=4 * math.log(2), tokens=2, text="한국")  # 2 Hangul syllables: 2 characters, 6 UTF-8 bytes
    score.add(nll=2 * math.log(2), tokens=2, text="ab")
    d = score.as_dict()
    assert d["tokens"] == 4 and d["chars"] == 4 and d["docs"] == 2
    assert d["nll"] == pytest.approx(6 * math.log(2) / 4)
    assert d["perplexity"] == pytest.approx(2**1.5)  # exp(mean nll) = 2^(6 bits / 4 tokens)
    assert d["bpc"] == pytest.approx(6 / 4)  # 6 bits over 4 characters
    assert d["bpb"] == pytest.approx(6 / 8)  # 6 bits over 6 + 2 bytes


def test_edges():
    assert bits(math.log(2)) == pytest.approx(1.0)
    assert perplexity_of(0.0) == 1.0
    assert math.isfinite(perplexity_of(10_000.0))  # an untrained model's perplexity stays a float
    empty = LMScore().as_dict()
    assert math.isnan(empty["nll"]) and math.isnan(empty["bpc"]) and math.isnan(empty["bpb"])
