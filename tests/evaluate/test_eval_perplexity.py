"""Perplexity = exp(mean NLL); the sliding window agrees with the full window when the text fits."""

import math

import pytest
import torch

from kolm.errors import DataError
from kolm.evaluate.perplexity import document_nll, perplexity

TEXT = "오늘 서울 날씨 맑다 . 영화 정말 좋다 , 배우 연기 최고 . 이야기 너무 재미 없다 ."


def test_perplexity_is_exp_mean_nll_by_hand(tiny_lm, tiny_tokenizer):
    ids = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(tiny_lm(input_ids=x).logits[0, :-1], -1)
    nll = -logp.gather(-1, x[0, 1:, None]).squeeze(-1)  # by hand: -log p(token t+1 | tokens <= t)
    out = perplexity(tiny_lm, tiny_tokenizer, [TEXT])
    assert out["tokens"] == len(ids) - 1
    assert out["perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)
    assert out["bpc"] == pytest.approx(float(nll.sum()) / math.log(2) / len(TEXT), rel=1e-5)
    # and HF's own mean loss agrees
    assert out["nll"] == pytest.approx(float(tiny_lm(input_ids=x, labels=x).loss.detach()), rel=1e-5)


def test_sliding_window_equals_full_window_when_text_fits(tiny_lm, tiny_tokenizer):
    ids = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    full = document_nll(tiny_lm, ids, max_length=64, stride=64)
    windowed = document_nll(tiny_lm, ids, max_length=64, stride=8)
    assert full[1] == windowed[1] == len(ids) - 1
    assert full[0] == pytest.approx(windowed[0], rel=1e-6)


def test_sliding_window_scores_each_token_once(tiny_lm, tiny_tokenizer):
    ids = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(" ".join([TEXT] * 3), add_special_tokens=False)["input_ids"]
    assert len(ids) > 16
    for max_length, stride in [(16, 8), (16, 1), (16, 15), (10, 3)]:
        nll, count = document_nll(tiny_lm, ids, max_length, stride)
        assert count == len(ids) - 1
        assert math.isfinite(nll)
    # more context per prediction (smaller stride) changes the score only a little on a random model
    a = document_nll(tiny_lm, ids, 16, 1)[0]
    b = document_nll(tiny_lm, ids, 16, 16 - 1)[0]
    assert a == pytest.approx(b, rel=0.05)


def test_empty_text_is_a_clear_error(tiny_lm, tiny_tokenizer):
    with pytest.raises(DataError, match="empty validation split"):
        perplexity(tiny_lm, tiny_tokenizer, ["", "   "])
