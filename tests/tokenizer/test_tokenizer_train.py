"""Tokenizer training: every kind loads with AutoTokenizer, byte-level kinds round-trip exactly, chat template set."""

import json
import unicodedata

import pytest
from transformers import AutoTokenizer

from kolm.tokenizer.config import TokenizerConfig
from kolm.tokenizer.train import CHAT_TOKENS, save_tokenizer, train_tokenizer

TEXTS = [
    "한국어 자연어 처리는 매우 흥미로운 분야입니다.",
    "오늘은 날씨가 맑아서 가족과 함께 한강 공원에 다녀왔다. 자전거도 탔다!",
    "인공지능(AI) 모델은 2024년에 크게 발전했다. GPT와 BERT를 비교해 보자.",
    "영화 진짜 재밌어요ㅋㅋㅋ 배우들 연기 최고 😀",
    "서울특별시 종로구 세종대로 209\n정부서울청사 앞에서 만나요.",
] * 20
HARD = [
    "한국어 자연어 처리는 매우 흥미로운 분야입니다.",
    "처음 보는 글자 뷁 똠얌꿍 𝔘𝔫𝔦 ∮ 🦄\n\n  두 칸  공백\t탭",
    "ㄱㄴㄷ ㅏㅑ 한자 漢字 日本語 русский",
    unicodedata.normalize("NFC", unicodedata.normalize("NFD", "자모 분해 후 재조합")),
]


@pytest.fixture(scope="module")
def cfg():
    return TokenizerConfig(vocab_size=400, min_frequency=1)


@pytest.mark.parametrize("kind", ["bytelevel_bpe", "unigram", "sp_bpe", "wordpiece"])
def test_kind_trains_and_loads(kind, cfg, tmp_path):
    tok, stats = train_tokenizer(kind, TEXTS, cfg)
    save_tokenizer(tok, tmp_path, stats)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    assert hf.bos_token == "<s>" and hf.eos_token == "</s>" and hf.pad_token == "<pad>"
    for t in CHAT_TOKENS:
        assert len(hf.encode(t, add_special_tokens=False)) == 1  # chat tokens are single special tokens
    chat = hf.apply_chat_template(
        [{"role": "user", "content": "안녕하세요"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<s><|user|>\n안녕하세요<|end|>\n<|assistant|>\n"
    assert stats["vocab_size"] <= cfg.vocab_size + 1
    assert json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))["kind"] == kind
    if kind in ("unigram", "sp_bpe"):  # byte fallback instead of <unk> for unseen characters
        ids = hf.encode("뷁🦄", add_special_tokens=False)
        assert hf.unk_token_id not in ids
        assert hf.decode(ids) == "뷁🦄"


def test_bytelevel_round_trip_exact(cfg, tmp_path):
    tok, stats = train_tokenizer("bytelevel_bpe", TEXTS, cfg)
    save_tokenizer(tok, tmp_path, stats)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    for text in HARD + TEXTS[:5]:
        ids = hf.encode(text, add_special_tokens=False)
        assert hf.decode(ids) == text


def test_nfd_input_is_normalized(cfg):
    tok, _ = train_tokenizer("bytelevel_bpe", TEXTS, cfg)
    nfd = unicodedata.normalize("NFD", "한국어 자연어")
    assert tok.encode(nfd).ids == tok.encode("한국어 자연어").ids


def test_split_digits(cfg):
    tok, _ = train_tokenizer("bytelevel_bpe", TEXTS, cfg)
    assert [t for t in tok.encode("2024").tokens] == ["2", "0", "2", "4"]


def _spanning_tokens(hf, stem_particle):
    """Tokens (as text) of TEXTS[i] whose character span crosses the boundary between a stem and its particle."""
    found = []
    for i, stem, particle in stem_particle:
        text = TEXTS[i]
        cut = text.index(stem + particle) + len(stem)
        offsets = hf(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        found += [text[s:e] for s, e in offsets if s < cut < e]
    return found


def test_morpheme_bpe_round_trip_and_no_kiwi_needed_to_load(tmp_path):
    cfg = TokenizerConfig(kind="morpheme_bpe", vocab_size=400, min_frequency=1)
    tok, stats = train_tokenizer("morpheme_bpe", TEXTS, cfg)
    assert stats["kiwi_presegment_s"] > 0
    save_tokenizer(tok, tmp_path, stats)
    saved = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert "Split" not in json.dumps(saved["pre_tokenizer"])  # the Kiwi boundary split was for training only
    hf = AutoTokenizer.from_pretrained(tmp_path)
    for text in HARD:
        assert hf.decode(hf.encode(text, add_special_tokens=False)) == text
    # Merges never join a stem and its particle: no token spans the stem|particle boundary, while the
    # plain byte-level BPE trained on the same texts with the same budget does merge across some of them.
    stem_particle = [
        (0, "처리", "는"),
        (1, "오늘", "은"),
        (1, "날씨", "가"),
        (1, "가족", "과"),
        (1, "공원", "에"),
        (1, "자전거", "도"),
        (2, "모델", "은"),
    ]
    plain_dir = tmp_path / "plain"
    plain_tok, plain_stats = train_tokenizer("bytelevel_bpe", TEXTS, cfg)
    save_tokenizer(plain_tok, plain_dir, plain_stats)
    plain = AutoTokenizer.from_pretrained(plain_dir)
    assert _spanning_tokens(hf, stem_particle) == []
    assert len(_spanning_tokens(plain, stem_particle)) >= 3  # e.g. 씨가, 원에, 전거도


def test_kiwi_boundary_metric():
    from kolm.tokenizer.compare import kiwi_boundaries, measure_boundaries

    cuts = kiwi_boundaries(["처리는 흥미로운"])  # 처리|는 흥미|롭|은: cuts at 2, 6, 7 (Kiwi reuses the loaded model)
    assert 2 in cuts[0] and 6 in cuts[0]
    from transformers import PreTrainedTokenizerFast

    cfg = TokenizerConfig(vocab_size=500, min_frequency=1)
    kiwi_cuts = kiwi_boundaries(TEXTS[:5])
    agreement = {}
    for kind in ("bytelevel_bpe", "morpheme_bpe"):
        tok, _ = train_tokenizer(kind, TEXTS, cfg)
        agreement[kind] = measure_boundaries(PreTrainedTokenizerFast(tokenizer_object=tok), TEXTS[:5], kiwi_cuts)
    assert 0 < agreement["bytelevel_bpe"] < agreement["morpheme_bpe"] <= 1
