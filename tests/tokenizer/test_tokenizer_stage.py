"""Tokenizer stage: train + candidates + compare on the curated embedded corpus; compare metrics on known cases."""

import json

from transformers import AutoTokenizer

from kolm.config import load_config
from kolm.run import run_stage
from kolm.tokenizer.compare import compare_dirs, segment
from kolm.tokenizer.config import TokenizerConfig
from kolm.tokenizer.train import save_tokenizer, train_tokenizer


def test_stage_trains_candidates_and_compares(tmp_path):
    cfg = load_config(
        None,
        [
            "data.num_proc=1",
            "tokenizer.vocab_size=600",
            "tokenizer.compare=[sp_bpe, wordpiece]",
            "tokenizer.kiwi_docs=0",
        ],
        run_dir=tmp_path,
    )
    run_stage(cfg, "data")
    result = run_stage(cfg, "tokenizer")
    out = tmp_path / "tokenizer"
    hf = AutoTokenizer.from_pretrained(out)
    text = "한국어 자연어 처리는 매우 흥미로운 분야입니다."
    assert hf.decode(hf.encode(text, add_special_tokens=False)) == text
    assert (out / "candidates" / "sp_bpe" / "tokenizer.json").is_file()
    report = json.loads((out / "compare" / "compare.json").read_text(encoding="utf-8"))
    assert set(report["results"]) == {"bytelevel_bpe", "sp_bpe", "wordpiece"}
    assert report["results"]["bytelevel_bpe"]["round_trip"] == 1.0
    assert (out / "compare" / "compare.png").is_file()
    md = (out / "compare" / "compare.md").read_text(encoding="utf-8")
    assert text in md and "tokens/어절" in md
    assert "compare/compare.png" in (out / "summary.md").read_text(encoding="utf-8")
    assert result.metrics["vocab_size"] == len(hf) or result.metrics["vocab_size"] <= 600
    # `kolm tokenizer compare` with an extra directory
    extra = tmp_path / "extra_tok"
    tok, stats = train_tokenizer(
        "unigram", ["한국어 문장 하나", "또 다른 한국어 문장"] * 10, TokenizerConfig(vocab_size=300, min_frequency=1)
    )
    save_tokenizer(tok, extra, stats)
    cfg2 = load_config(
        None,
        ["data.num_proc=1", "tokenizer.vocab_size=600", f"tokenizer.compare_dirs=['{extra}']", "tokenizer.kiwi_docs=0"],
        run_dir=tmp_path,
    )
    run_stage(cfg2, "tokenizer", action="compare")
    report = json.loads((out / "compare" / "compare.json").read_text(encoding="utf-8"))
    assert "extra_tok" in report["results"] and "sp_bpe" in report["results"]


def test_compare_metrics_on_a_known_case(tmp_path):
    texts = ["가나다 라마", "가나다 라마 바사"] * 30
    tok, stats = train_tokenizer("wordpiece", texts, TokenizerConfig(vocab_size=300, min_frequency=1))
    save_tokenizer(tok, tmp_path / "wp", stats)
    rep = compare_dirs({"wp": tmp_path / "wp"}, ["가나다 라마 바사"], tmp_path / "cmp", ["가나다 라마"], kiwi_docs=0)
    m = rep["results"]["wp"]
    assert m["fertility"] == 1.0 and m["split_eojeol_share"] == 0.0  # every 어절 is one learned token
    assert m["chars_per_token"] == round(len("가나다 라마 바사") / 3, 3)
    assert m["unk_or_byte_rate"] == 0.0
    assert rep["segmentations"]["pieces"]["wp"] == [["가나다", "라마"]]
    hf = AutoTokenizer.from_pretrained(tmp_path / "wp")
    assert segment(hf, "가나다 라마 바사") == ["가나다", "라마", "바사"]
