"""Korean-aware normalization: NFC, HTML, invisible characters, repeats, URLs, whitespace, punctuation kept."""

import unicodedata

from kolm.data.normalize import clean_whitespace, make_normalizer, remove_invisible, squash_repeats, strip_html


def test_nfd_input_becomes_nfc():
    nfd = unicodedata.normalize("NFD", "한국어 문장입니다.")
    assert nfd != "한국어 문장입니다."
    assert make_normalizer()(nfd) == "한국어 문장입니다."


def test_nfkc_is_optional():
    text = "ＡＢＣ１２３ 가나"  # full-width Latin and digits
    assert make_normalizer("NFC")(text) == text
    assert make_normalizer("NFKC")(text) == "ABC123 가나"


def test_html_tags_and_entities():
    assert strip_html("<p>좋은 영화&amp;음악</p><br>최고&nbsp;!").split() == ["좋은", "영화&음악", "최고", "!"]
    assert "alert" not in strip_html("앞<script>alert(1)</script>뒤")


def test_invisible_characters_removed_newlines_kept():
    text = "안\u200b녕\ufeff하세요\x00\r\n다음 줄"
    assert remove_invisible(text) == "안녕하세요\n다음 줄"


def test_squash_repeats_jamo_and_punctuation_not_digits():
    assert squash_repeats("ㅋㅋㅋㅋㅋㅋ 웃겨!!!!!!", 3) == "ㅋㅋㅋ 웃겨!!!"
    assert squash_repeats("ㅠㅠ 1000000원", 3) == "ㅠㅠ 1000000원"
    assert squash_repeats("ㅋㅋㅋㅋ", 0) == "ㅋㅋㅋㅋ"


def test_punctuation_emoji_and_mixed_script_kept():
    text = '진짜 "최고"의 영화... AI 기술(GPT)도 나옴?! 😀'
    assert make_normalizer()(text) == text


def test_urls_placeholder_or_remove():
    text = "자세한 내용은 https://example.com/a?b=1 참고"
    assert make_normalizer(urls="placeholder")(text) == "자세한 내용은 <url> 참고"
    assert make_normalizer(urls="remove")(text) == "자세한 내용은 참고"
    assert make_normalizer(urls="keep")(text) == text


def test_whitespace():
    assert clean_whitespace("  가\u3000\u00a0나   다 \n\n\n\n 라  ") == "가 나 다\n\n라"
