"""Document filters on hand-made Korean cases; each reports its name and reason."""

import pytest

from kolm.data.config import FilterConfig
from kolm.data.filters import DocFilter, dup_line_frac, hangul_ratio, top_ngram_frac

GOOD = "오늘은 날씨가 맑아서 가족과 함께 한강 공원에 다녀왔다. 자전거를 타고 김밥도 먹었다."


def check(text, **kw):
    hit = DocFilter(FilterConfig(**kw)).check(text)
    return hit[0] if hit else None


def test_good_document_passes():
    assert check(GOOD) is None


def test_length_and_eojeol():
    assert check("짧은 글", min_chars=20) == "length"
    assert check("가" * 50, min_chars=5, min_eojeol=2) == "eojeol"
    assert check(GOOD * 10, max_chars=100) == "length"


def test_hangul_ratio_language_check():
    assert hangul_ratio("한국어 text") == 3 / 7
    assert hangul_ratio("ㅋㅋㅋ 😀") == 1.0  # compatibility jamo count, emoji are not letters
    assert check("This is an English sentence that is quite long enough.") == "hangul_ratio"
    assert (
        check("오늘 AI 모델 GPT를 써 봤는데 결과가 꽤 좋았다. Python 코드도 잘 짠다.") is None
    )  # mixed Hangul/Latin passes


def test_symbol_digit_url_ratios():
    assert check("★☆★☆★☆★☆ 최고 ★☆★☆★☆★☆ 대박 ★☆★☆") == "symbol_ratio"
    assert check("가격 1234567 8901234 5678901 원", max_symbol_ratio=1) == "digit_ratio"
    assert (
        check("링크 https://example.com/very/long/path/to/some/page/index.html 참고", max_symbol_ratio=1) == "url_ratio"
    )


def test_gopher_repetition():
    text = "\n".join(["같은 줄이 반복됩니다 정말로"] * 5 + ["다른 줄 하나만 있습니다"])
    assert dup_line_frac(text) > 0.5
    assert check(text) == "repetition"
    words = "정말 재밌다 정말 재밌다 정말 재밌다 정말 재밌다 정말 재밌다".split()
    assert top_ngram_frac(words, 2) > 0.9
    assert check(" ".join(words)) == "repetition"


def test_bad_words_and_boilerplate(tmp_path):
    assert check(GOOD, bad_words=["한강"]) == "bad_words"
    f = tmp_path / "bad.txt"
    f.write_text("김밥\n", encoding="utf-8")
    assert check(GOOD, bad_words_file=str(f)) == "bad_words"
    assert (
        check("[뉴스] 짧은 소식\n무단전재 및 재배포 금지. 저작권자 © 한국일보, 구독하기와 기사제보 안내")
        == "boilerplate"
    )
    assert check(GOOD + "\n무단전재 및 재배포 금지") is None  # a footer line alone does not drop a real article


def test_filter_config_validation():
    import pytest

    from kolm.errors import ConfigError

    with pytest.raises(ConfigError):
        FilterConfig(min_hangul_ratio=1.5)


@pytest.mark.slow
def test_morpheme_count_filter_with_kiwi():
    assert check("가나다라마바사아자차카타파하 가나다", min_chars=1, min_morphemes=50) == "morphemes"
    assert check(GOOD, min_morphemes=5) is None


def test_sentence_punctuation_is_not_a_symbol():
    assert check("최고의 영화...정말 최고다..!!", min_chars=5) is None  # ellipses are normal in Korean reviews
    assert check("♥♥♥ 최고 ♥♥♥ ^^ ★★★", min_chars=5) == "symbol_ratio"


def test_boilerplate_footer_is_stripped_from_kept_documents():
    flt = DocFilter(FilterConfig())
    text, n = flt.strip_boilerplate(GOOD + "\n무단전재 및 재배포 금지")
    assert (text, n) == (GOOD, 1)
    assert flt.strip_boilerplate(GOOD) == (GOOD, 0)
