"""Korean BLEU/chrF/ROUGE sanity: identical text scores perfectly, unrelated text near zero."""

import pytest

from kolm.errors import DataError
from kolm.metrics import text as textmetrics
from kolm.metrics.text import bleu, chrf, generation_metrics, korean_tokens, rouge

SAME = "오늘 서울의 날씨는 맑고 기온은 어제보다 높습니다."
OTHER = "고양이가 따뜻한 소파 위에서 조용히 잠들었다."


def test_rouge_identical_korean_is_one():
    for kind in ("kiwi", "char", "eojeol"):
        scores = rouge([SAME], [SAME], tokenizer=kind)
        assert scores == {"rouge1": pytest.approx(1.0), "rouge2": pytest.approx(1.0), "rougeL": pytest.approx(1.0)}


def test_rouge_unrelated_korean_near_zero():
    scores = rouge([OTHER], [SAME])
    assert all(v < 0.15 for v in scores.values()), scores


def test_default_rouge_tokenizer_would_drop_hangul():
    # why we pass our own tokenizer: rouge-score's default keeps only [a-z0-9]
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rouge1"]).score(SAME, SAME)["rouge1"].fmeasure
    assert default == 0.0
    assert "서울" in korean_tokens(SAME)


def test_morphemes_share_stems():
    # 학교에서 / 학교가 share the stem only after morpheme segmentation
    assert rouge(["학교에서 공부했다"], ["학교가 크다"], "eojeol")["rouge1"] == 0.0
    assert rouge(["학교에서 공부했다"], ["학교가 크다"], "kiwi")["rouge1"] > 0.0


@pytest.mark.parametrize("tok", ["auto", "kiwi", "char"])
def test_bleu_sanity(tok):
    assert bleu([SAME, OTHER], [SAME, OTHER], tokenize=tok)["bleu"] == pytest.approx(100.0)
    assert bleu([OTHER], [SAME], tokenize=tok)["bleu"] < 10.0
    partial = bleu(["오늘 서울의 날씨는 맑습니다."], [SAME], tokenize=tok)["bleu"]
    assert 0.0 < partial < 100.0


def test_chrf_sanity():
    assert chrf([SAME], [SAME])["chrf"] == pytest.approx(100.0)
    assert chrf([OTHER], [SAME])["chrf"] < 20.0
    assert chrf(["오늘 서울의 날씨는 맑습니다."], [SAME])["chrf"] > chrf([OTHER], [SAME])["chrf"]


def test_generation_metrics_and_length_mismatch():
    m = generation_metrics([SAME], [SAME])
    assert m["bleu"] == pytest.approx(100.0) and m["rougeL"] == pytest.approx(1.0) and m["n"] == 1
    with pytest.raises(DataError, match="references"):
        generation_metrics([SAME, OTHER], [SAME])


def test_bleu_falls_back_to_kiwi_without_mecab(monkeypatch):
    monkeypatch.setattr(textmetrics, "_mecab_works", lambda: False)
    out = textmetrics.bleu(["오늘 날씨가 맑다"], ["오늘 날씨가 맑다"], tokenize="auto")
    assert out["tokenize"] == "kiwi" and out["bleu"] == pytest.approx(100.0)


def test_rouge_char_tokens_by_hand():
    # syllables: hypothesis 가 나 다 , reference 가 나 라 마 -> overlap 2; P=2/3 R=2/4 F1=4/7
    assert rouge(["가나다"], ["가나라마"], "char")["rouge1"] == pytest.approx(4 / 7)
    assert korean_tokens("가, 나!", "char") == ["가", "나"] and korean_tokens("학교에서 공부", "eojeol") == [
        "학교에서",
        "공부",
    ]
