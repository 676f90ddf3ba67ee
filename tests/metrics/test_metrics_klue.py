"""KLUE metrics against hand-computed cases (every number below is worked out in the comment beside it)."""

from __future__ import annotations

import pytest

from kolm.data.klue import NER_TAGS, RE_LABELS
from kolm.metrics.klue import (
    answer_char_f1,
    char_f1,
    entities,
    entity_f1,
    exact_match,
    mrc_scores,
    ner_scores,
    re_scores,
    rouge_w,
    sts_scores,
)


def test_sts_pearson_and_f1_at_three():
    # x = 1..4, y = 2,1,4,3: deviations (-1.5,-.5,.5,1.5) and (-.5,-1.5,1.5,.5), covariance sum 3, variances 5 -> r = 0.6
    assert sts_scores([1, 2, 3, 4], [2, 1, 4, 3])["pearson"] == pytest.approx(60.0)
    # predictions 3.0 (paraphrase: the threshold is inclusive), 2.9, 4.0, 1.0 against binary gold 1, 1, 0, 0:
    # TP 1, FP 1, FN 1 -> precision 1/2, recall 1/2, F1 1/2
    out = sts_scores([3.0, 2.9, 4.0, 1.0], [3.2, 3.5, 2.0, 0.4], [1, 1, 0, 0])
    assert out["f1"] == pytest.approx(50.0) and out["n"] == 4
    # without binary labels, gold >= 3.0 decides
    assert sts_scores([3.0, 2.9, 4.0, 1.0], [3.2, 3.5, 2.0, 0.4])["f1"] == pytest.approx(50.0)
    assert sts_scores([1.0, 1.0], [0.0, 5.0])["pearson"] == 0.0  # constant predictions: r is undefined, reported 0


def test_entities_follow_strict_iob2():
    assert entities(["B-PS", "I-PS", "O", "B-LC", "I-LC"]) == [(0, 2, "PS"), (3, 5, "LC")]
    assert entities(["I-PS", "I-PS", "O"]) == []  # strict IOB2: I- without its B- is no entity
    assert entities(["B-PS", "I-LC", "I-LC"]) == [(0, 1, "PS")]  # a type change ends PS; the I-LC run is invalid
    assert entities(["B-DT", "B-DT"]) == [(0, 1, "DT"), (1, 2, "DT")]
    assert entities(["O", "O"]) == []


def test_entity_f1_partial_and_boundary_mismatch_count_wrong():
    gold = [
        ["B-PS", "I-PS", "O", "B-LC", "I-LC"],  # PS [0,2), LC [3,5)
        ["B-DT", "I-DT", "I-DT", "O"],  # DT [0,3)
        ["B-OG", "I-OG", "O"],  # OG [0,2)
    ]
    pred = [
        ["B-PS", "I-PS", "O", "B-LC", "O"],  # PS right; LC cut short (partial) -> wrong
        ["O", "B-DT", "I-DT", "I-DT"],  # boundary mismatch on both sides -> wrong
        ["B-PS", "I-PS", "O"],  # right span, wrong type -> wrong
    ]
    # Pooled: gold 4 entities, predicted 4, 1 exact -> precision = recall = micro F1 = 1/4.
    # Per type (KLUE's macro): PS 1 right of 2 predicted, 1 gold -> F1 2/3; LC, DT, OG 0 -> (2/3) / 4
    out = entity_f1(gold, pred)
    assert out["precision"] == out["recall"] == out["micro_f1"] == 25.0
    assert out["f1"] == pytest.approx(100 / 6, abs=1e-3)
    # an extra predicted entity of a new type: micro 1 of 5 predicted, of 4 gold -> 2/9; macro (2/3) / 5 types
    pred[2] = ["B-PS", "I-PS", "B-QT"]
    out = entity_f1(gold, pred)
    assert out["micro_f1"] == pytest.approx(100 * 2 / 9, abs=1e-3)
    assert out["f1"] == pytest.approx(100 * 2 / 15, abs=1e-3)


def test_character_level_macro_f1_over_all_tags():
    gold = [["B-PS", "I-PS", "O", "B-LC"]]
    pred = [["B-PS", "O", "O", "B-LC"]]
    # B-PS: F1 1; I-PS: 1 gold, 0 predicted -> 0; O: 1 gold, 2 predicted, 1 right -> 2/3; B-LC: 1; the 9 tags
    # absent from both score 1 (KLUE's zero_division=True) -> (1 + 0 + 2/3 + 1 + 9) / 13
    assert char_f1(gold, pred, NER_TAGS) == pytest.approx(100 * (35 / 3) / 13, abs=1e-3)
    out = ner_scores(gold, pred, NER_TAGS)
    assert out["char_f1"] == pytest.approx(100 * (35 / 3) / 13, abs=1e-3)
    # LC matches; PS [0,1) is a partial span of the gold [0,2): per type 0 and 1 -> macro 1/2, pooled 1 of 2
    assert out["entity_f1"] == out["entity_micro_f1"] == 50.0
    with pytest.raises(ValueError):
        char_f1(gold, [["O"]], NER_TAGS)


def test_mrc_exact_match_and_char_f1_with_unanswerable():
    assert exact_match("조선 중기.", ["조선 중기"]) == 1.0  # ASCII punctuation does not count
    assert exact_match("조선  중기", ["조선 중기"]) == exact_match("KBS", ["kbs"]) == 1.0  # space runs, case
    assert exact_match("조선중기", ["조선 중기"]) == 0.0  # KLUE keeps the space between words
    assert exact_match("", []) == 1.0 and exact_match("조선", []) == 0.0  # unanswerable: only "" is right
    assert exact_match("", ["조선"]) == 0.0
    # 학익진을 vs 학익진: 3 common characters, precision 3/4, recall 1 -> F1 6/7
    assert answer_char_f1("학익진을", ["학익진"]) == pytest.approx(6 / 7)
    assert answer_char_f1("x", ["가나", "x"]) == 1.0  # the best over the gold answers
    preds = {"a": "조선 중기", "b": "학익", "c": "", "d": ""}
    golds = {"a": ["조선 중기"], "b": ["학익진"], "c": ["세종대왕"], "d": []}
    out = mrc_scores(preds, golds)
    # EM: a and d -> 2/4. char F1 and ROUGE-W alike here: a 1, b (precision 1, recall 2/3 -> 0.8), c 0, d 1
    assert out["exact_match"] == 50.0
    assert out["char_f1"] == pytest.approx(70.0) and out["rouge_w"] == pytest.approx(70.0)
    assert out["n"] == 4


def test_rouge_w_is_the_f1_of_the_longest_common_run():
    # gold 가나다라, prediction 가X나다라: the longest shared run is 나다라 -> precision 3/5, recall 3/4
    assert rouge_w("가X나다라", ["가나다라"]) == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    # one run covering the gold: recall 1, precision 3/4
    assert rouge_w("학익진을", ["학익진"]) == pytest.approx(2 * 0.75 / 1.75)
    assert rouge_w("", []) == 1.0 and rouge_w("가", []) == 0.0 and rouge_w("", ["가"]) == 0.0
    # the same characters in another order share runs of one character only
    assert rouge_w("라다나가", ["가나다라"]) == pytest.approx(0.25)
    assert rouge_w("가나다라", ["마바", "가나다라"]) == 1.0  # the best over the gold answers


def test_re_micro_f1_without_no_relation_and_auprc():
    no_rel, a, b = 0, 1, 2  # no_relation, org:dissolved, org:founded
    gold = [no_rel, a, b, b]
    k = len(RE_LABELS)

    def row(p0, p1, p2):
        return [p0, p1, p2] + [0.0] * (k - 3)

    probs = [row(0.7, 0.2, 0.1), row(0.1, 0.8, 0.1), row(0.2, 0.5, 0.3), row(0.5, 0.1, 0.05)]
    # predicted: no_relation, a, a, no_relation. Without no_relation: TP 1 (a), FP 1 (a for b), FN 2 (both b)
    # -> precision 1/2, recall 1/3, F1 0.4
    out = re_scores(gold, probs, RE_LABELS)
    assert out["micro_f1"] == pytest.approx(40.0)
    assert out["accuracy"] == 50.0
    # Area under each present class's precision-recall curve (trapezoidal, as KLUE's baseline): no_relation
    # and a rank their one positive first -> 1. b (positives c 0.3, d 0.05; negatives a 0.1, b 0.1): the
    # curve's points (recall, precision) are (1, 1/2) at 0.05, (1/2, 1/3) at 0.1, (1/2, 1) at 0.3, (0, 1)
    # -> 1/2 x (1/2 + 1/3) / 2 + 0 + 1/2 x 1 = 17/24; mean (1 + 1 + 17/24) / 3
    assert out["auprc"] == pytest.approx(100 * (2 + 17 / 24) / 3, abs=1e-3)
    # predicting no_relation for everything scores 0 micro-F1, not the share of no_relation rows
    assert re_scores([0, 0, 1], [row(1, 0, 0)] * 3, RE_LABELS)["micro_f1"] == 0.0
