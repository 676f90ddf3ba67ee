"""The data stage end to end: embedded corpus plus a messy file; shards, report, split, read_split."""

import json

import pyarrow.parquet as pq
import pytest

from kolm.config import load_config
from kolm.data.io import read_split
from kolm.errors import DataError
from kolm.run import run_stage

REVIEW = "배우들의 연기가 정말 훌륭했고 이야기 전개도 탄탄해서 끝까지 몰입해서 봤습니다. 강력 추천합니다"


def _messy_file(tmp_path):
    rows = [
        REVIEW,
        REVIEW,
        REVIEW + "!!",
        "짧음",
        "English only text that is long enough to pass the length check.",
        "문의는 hong@example.com 또는 010-1234-5678 으로 연락 주세요. 답변은 빠르게 드리겠습니다.",
        "<p>HTML &amp; 태그가 섞인 리뷰입니다ㅋㅋㅋㅋㅋㅋ 그래도 내용은 괜찮은 편이에요</p>",
        "지역 소식: 시청 앞 광장에서 주말마다 작은 음악회가 열린다고 합니다.<br>무단전재 및 재배포 금지",
    ]
    f = tmp_path / "reviews.jsonl"
    with f.open("w", encoding="utf-8") as fh:
        for i, t in enumerate(rows):
            fh.write(json.dumps({"id": i, "review": t}, ensure_ascii=False) + "\n")
        fh.write("{broken\n")
    return f


def test_data_stage_end_to_end(tmp_path):
    f = _messy_file(tmp_path)
    cfg = load_config(
        None,
        [
            f"data.sources=[{{kind: embedded, max_docs: 30}}, {{kind: file, path: '{f}', text_field: review, weight: 2.0}}]",
            "data.num_proc=1",
            "data.val_fraction=0.1",
        ],
        run_dir=tmp_path / "run",
    )
    result = run_stage(cfg, "data")
    out = tmp_path / "run" / "data"
    report = json.loads((out / "curation_report.json").read_text(encoding="utf-8"))
    assert report["removed"]["exact_duplicate"] == 1
    assert report["removed"]["near_duplicate"] == 1
    assert report["removed"]["length"] >= 1 and report["removed"]["hangul_ratio"] == 1
    assert report["pii"] == {"email": 1, "phone": 1}
    assert report["boilerplate_lines_removed"] == 1
    assert any("broken JSON" in k for k in report["issues"])
    assert all(len(v) <= 3 for v in report["examples"].values())
    train = list(read_split(out, "train"))
    val = list(read_split(out, "validation"))
    assert len(val) >= 1
    assert any("<email>" in t and "<phone>" in t for t in train + val)
    assert any(t.startswith("HTML & 태그") and "ㅋㅋㅋ " in t for t in train + val)
    table = pq.read_table(sorted((out / "train").glob("*.parquet"))[0])
    assert table.column_names == ["id", "text", "source"]
    assert (out / "summary.md").is_file() and (out / "length_hist.png").is_file()
    assert "| filters |" in (out / "curation_report.md").read_text(encoding="utf-8")
    assert result.metrics["train_docs"] == report["split"]["train_docs"]
    # weight 2.0: the file's training documents appear twice
    file_train = [
        i for i, s in zip(table.column("id").to_pylist(), table.column("source").to_pylist()) if s.startswith("file:")
    ]
    assert any(i.endswith("#1") for i in file_train)


def test_split_is_deterministic(tmp_path):
    def run(d):
        cfg = load_config(None, ["data.num_proc=1"], run_dir=d)
        run_stage(cfg, "data")
        return list(read_split(d / "data", "validation"))

    assert run(tmp_path / "a") == run(tmp_path / "b")


def test_no_documents_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cfg = load_config(
        None, [f"data.sources=[{{kind: file, path: '{empty}'}}]", "data.num_proc=1"], run_dir=tmp_path / "r"
    )
    with pytest.raises(DataError, match="no documents"):
        run_stage(cfg, "data")
    nothing_kept = load_config(None, ["data.num_proc=1", "data.filters.min_chars=1000000"], run_dir=tmp_path / "r2")
    with pytest.raises(DataError, match="min_chars"):
        run_stage(nothing_kept, "data")


def test_multiprocess_matches_single(tmp_path):
    outs = []
    for n in (1, 2):
        cfg = load_config(None, [f"data.num_proc={n}", "data.chunk_docs=10"], run_dir=tmp_path / f"p{n}")
        run_stage(cfg, "data")
        outs.append(list(read_split(tmp_path / f"p{n}" / "data", "train")))
    assert outs[0] == outs[1]
