"""Few-shot scoring ranks the right label; calibration removes a constant label bias."""

import math
from types import SimpleNamespace

import pytest
import torch

from kolm.errors import ConfigError
from kolm.evaluate.fewshot import continuation_logprobs, evaluate_fewshot, label_scores, pick_shots
from kolm.evaluate.prompts import load_fewshot_template, load_variations


class SentimentOracle(torch.nn.Module):
    """A hand-built 'language model' whose logits we control.

    At every position it raises the logit of the word 긍정 by `bias` plus
    `signal` when the last sentiment word seen so far is 좋다, and the logit of
    부정 by `signal` when it is 싫다. Causal by construction (looks only left).
    """

    def __init__(self, tokenizer, bias: float, signal: float):
        super().__init__()
        self.config = SimpleNamespace(max_position_embeddings=512)
        v = tokenizer.get_vocab()
        self.vocab = len(tokenizer)
        self.good, self.bad, self.pos, self.neg = v["좋다"], v["싫다"], v["긍정"], v["부정"]
        self.bias, self.signal = bias, signal

    def forward(self, input_ids, attention_mask=None):
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.vocab)  # (B, T, V)
        for b in range(B):
            state = 0
            for t in range(T):
                tok = int(input_ids[b, t])
                state = 1 if tok == self.good else -1 if tok == self.bad else state
                logits[b, t, self.pos] = self.bias + self.signal * (state == 1)
                logits[b, t, self.neg] = self.signal * (state == -1)
        return SimpleNamespace(logits=logits)


EXAMPLES = [("영화 정말 좋다", "1"), ("배우 연기 싫다", "0"), ("이야기 너무 좋다", "1"), ("영화 별로 싫다", "0")]
POOL = [("연기 최고 좋다", "1"), ("재미 없다 싫다", "0"), ("배우 좋다", "1"), ("영화 싫다", "0")]


@pytest.fixture()
def template():
    return load_fewshot_template("sentiment")


def test_continuation_logprobs_prefers_the_signalled_word(tiny_tokenizer):
    model = SentimentOracle(tiny_tokenizer, bias=0.0, signal=5.0)
    pos, neg = continuation_logprobs(model, tiny_tokenizer, "리뷰 : 영화 정말 좋다 감정 :", [" 긍정", " 부정"])
    assert pos > neg
    pos, neg = continuation_logprobs(model, tiny_tokenizer, "리뷰 : 영화 정말 싫다 감정 :", [" 긍정", " 부정"])
    assert neg > pos


@pytest.mark.parametrize("k", [0, 1, 4])
def test_fewshot_ranks_the_right_label(tiny_tokenizer, template, k):
    model = SentimentOracle(tiny_tokenizer, bias=0.0, signal=5.0)
    out = evaluate_fewshot(model, tiny_tokenizer, template, EXAMPLES, POOL, k, seed=0, calibrate=False)
    assert out["raw"]["accuracy"] == 1.0
    assert len(out["shots"]) == k


def test_calibration_removes_constant_bias(tiny_tokenizer, template):
    # bias 4 > signal 3: raw scoring always says 긍정; the content-free prior exposes the bias
    model = SentimentOracle(tiny_tokenizer, bias=4.0, signal=3.0)
    out = evaluate_fewshot(model, tiny_tokenizer, template, EXAMPLES, POOL, 0, calibrate=True)
    assert out["raw"]["accuracy"] == 0.5
    assert out["calibrated"]["accuracy"] == 1.0
    assert out["prior"]["1"] > out["prior"]["0"]


def test_real_tiny_model_runs_with_padding(tiny_lm, tiny_tokenizer, template):
    out = evaluate_fewshot(tiny_lm, tiny_tokenizer, template, EXAMPLES, POOL, 2, seed=1)
    assert out["raw"]["n"] == 4
    # Each batched prediction is the argmax of the same label's scores computed one example at a time,
    # and the reported accuracies are the shares of those predictions that hit the gold label.
    shots = [tuple(s) for s in out["shots"]]
    expected_raw, expected_cal = [], []
    for (text, _), rec in zip(EXAMPLES, out["predictions"]):
        scores = label_scores(tiny_lm, tiny_tokenizer, template, text, shots)
        probs = [math.exp(s - max(scores)) for s in scores]
        probs = [q / sum(probs) for q in probs]
        expected_raw.append(template.labels[probs.index(max(probs))])
        adj = [q / out["prior"][lab] for q, lab in zip(probs, template.labels)]
        expected_cal.append(template.labels[adj.index(max(adj))])
        assert [rec["probs"][lab] for lab in template.labels] == pytest.approx(probs, abs=1e-4)
    assert [rec["pred"] for rec in out["predictions"]] == expected_raw
    assert [rec["pred_calibrated"] for rec in out["predictions"]] == expected_cal
    gold = [label for _, label in EXAMPLES]
    assert out["raw"]["accuracy"] == sum(p == g for p, g in zip(expected_raw, gold)) / 4
    assert out["calibrated"]["accuracy"] == sum(p == g for p, g in zip(expected_cal, gold)) / 4
    # batched (padded) scores equal one-at-a-time scores
    ctx = template.prompt("영화 정말 좋다", [])
    both = continuation_logprobs(tiny_lm, tiny_tokenizer, ctx, [" 긍정", " 긍정 긍정"])
    alone = continuation_logprobs(tiny_lm, tiny_tokenizer, ctx, [" 긍정"])
    assert both[0] == pytest.approx(alone[0], abs=1e-4)


def test_pick_shots_balanced_and_seeded():
    shots = pick_shots(POOL, 2, ["1", "0"], seed=3)
    assert sorted(lab for _, lab in shots) == ["0", "1"]
    assert shots == pick_shots(POOL, 2, ["1", "0"], seed=3)


def test_templates_load_and_reject_bad_input(tmp_path):
    assert [v.name for v in load_variations()] == ["plain", "step_by_step", "persona"]
    with pytest.raises(ConfigError, match="not found"):
        load_fewshot_template("no-such-template")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: fewshot\nquery: '{text}'\nexample: '{text}'\nverbalizers: {a: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="label"):
        load_fewshot_template(str(bad))
    with pytest.raises(ConfigError, match="unknown variants"):
        load_variations("variations", ["plain", "shouting"])


def test_single_token_fast_path_equals_batched_path(tiny_lm, tiny_tokenizer, template):
    # " 긍정"/" 부정" are one token each (fast path); adding a two-token word forces the batched path
    ctx = template.prompt("영화 정말 좋다", POOL[:2])
    fast = continuation_logprobs(tiny_lm, tiny_tokenizer, ctx, [" 긍정", " 부정"])
    slow = continuation_logprobs(tiny_lm, tiny_tokenizer, ctx, [" 긍정", " 부정", " 긍정 부정"])
    assert fast == pytest.approx(slow[:2], abs=1e-4)


def test_truncation_keeps_the_end(tiny_lm, tiny_tokenizer, template):
    from kolm.evaluate.fewshot import score_pairs

    ctx = template.prompt("영화 정말 좋다", POOL)
    full = score_pairs(tiny_lm, tiny_tokenizer, [(ctx, " 긍정"), (ctx, " 긍정 부정")])
    assert score_pairs(
        tiny_lm, tiny_tokenizer, [(ctx, " 긍정"), (ctx, " 긍정 부정")], max_length=10_000
    ) == pytest.approx(full, abs=1e-5)
    short = score_pairs(tiny_lm, tiny_tokenizer, [(ctx, " 긍정"), (ctx, " 긍정 부정")], max_length=6)
    assert all(s < 0 for s in short)
