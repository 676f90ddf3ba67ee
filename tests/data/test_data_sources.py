"""Readers: file formats, named recipes in their official formats, and bad input that is counted, never lost silently."""

import gzip
import json
from collections import Counter

import pytest

from kolm.data.config import SourceConfig
from kolm.data.sources import read_file, read_recipe, read_source
from kolm.errors import DataError


def test_txt_line_and_block(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("첫 문서\n둘째 문서\n\n셋째 줄\n넷째 줄\n", encoding="utf-8")
    assert [t for _, t in read_file(f)] == ["첫 문서", "둘째 문서", "셋째 줄", "넷째 줄"]
    assert [t for _, t in read_file(f, txt_mode="block")] == ["첫 문서\n둘째 문서", "셋째 줄\n넷째 줄"]


def test_jsonl_gz_tsv_csv_parquet(tmp_path):
    g = tmp_path / "a.jsonl.gz"
    with gzip.open(g, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": 1, "body": "본문 하나"}, ensure_ascii=False) + "\n")
    assert [t for _, t in read_file(g, "body")] == ["본문 하나"]
    c = tmp_path / "a.csv"
    c.write_text('id,text\n1,"쉼표, 포함 문장"\n', encoding="utf-8")
    assert [t for _, t in read_file(c)] == ["쉼표, 포함 문장"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["파케이 문서", None]}), p)
    issues = Counter()
    assert [t for _, t in read_file(p, issues=issues)] == ["파케이 문서"]
    assert sum(issues.values()) == 1


def test_bzip2_line_files_read_like_plain_ones(tmp_path):
    import bz2

    rows = [{"id": 1, "text": "압축된 첫 문서"}, {"id": 2, "text": "둘째 문서"}]
    (tmp_path / "a.jsonl.bz2").write_bytes(
        bz2.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
    )
    (tmp_path / "b.txt.bz2").write_bytes(bz2.compress("한 줄\n두 줄\n".encode()))
    assert [t for _, t in read_file(tmp_path / "a.jsonl.bz2")] == ["압축된 첫 문서", "둘째 문서"]
    assert [t for _, t in read_file(tmp_path / "b.txt.bz2")] == ["한 줄", "두 줄"]
    (tmp_path / "c.json.bz2").write_bytes(bz2.compress(b"[]"))
    with pytest.raises(DataError, match="unknown file type"):
        list(read_file(tmp_path / "c.json.bz2"))
    (tmp_path / "cut.jsonl.bz2").write_bytes((tmp_path / "a.jsonl.bz2").read_bytes()[:20])
    issues = Counter()
    assert list(read_file(tmp_path / "cut.jsonl.bz2", issues=issues)) == []
    assert any("read error" in k for k in issues)


def test_bad_input_is_counted(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(
        '{"text": "좋은 줄"}\n{"text": broken\n{"other": 1}\n'.encode() + '{"text": "한글"}\n'.encode("cp949") + b"\n"
    )
    issues = Counter()
    assert [t for _, t in read_file(f, issues=issues)] == ["좋은 줄"]
    text = " ".join(issues)
    assert "broken JSON" in text and "without field 'text'" in text and "not valid UTF-8" in text
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    issues = Counter()
    assert list(read_file(empty, issues=issues)) == [] and "empty file" in " ".join(issues)


def test_missing_column_and_unknown_type(tmp_path):
    t = tmp_path / "a.tsv"
    t.write_text("id\tbody\n1\t문장\n", encoding="utf-8")
    with pytest.raises(DataError, match="no column 'text'"):
        list(read_file(t))
    with pytest.raises(DataError, match="unknown file type"):
        (tmp_path / "a.xyz").write_text("x")
        list(read_file(tmp_path / "a.xyz"))
    with pytest.raises(DataError, match="not found"):
        list(read_source(SourceConfig(kind="file", path=str(tmp_path / "nope.jsonl")), Counter()))


def test_recipes_official_formats(tmp_path):
    nsmc = tmp_path / "ratings_train.txt"
    nsmc.write_text(
        "id\tdocument\tlabel\n9976970\t아 더빙.. 진짜 짜증나네요 목소리\t0\n3819312\t\t1\n", encoding="utf-8"
    )
    assert [t for _, t in read_recipe("nsmc", str(nsmc))] == ["아 더빙.. 진짜 짜증나네요 목소리"]
    nli = tmp_path / "klue-nli-v1.1_train.json"
    nli.write_text(
        json.dumps(
            [
                {
                    "guid": "klue-nli-v1_train_00000",
                    "premise": "힛걸 진심 최고다.",
                    "hypothesis": "힛걸 진심 최저다.",
                    "gold_label": "contradiction",
                }
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    assert [t for _, t in read_recipe("klue-nli", str(nli))] == ["힛걸 진심 최고다.", "힛걸 진심 최저다."]
    sts = tmp_path / "klue-sts-v1.1_train.json"
    sts.write_text(
        json.dumps(
            [
                {
                    "guid": "s1",
                    "sentence1": "숙소 위치는 찾기 쉽다.",
                    "sentence2": "숙소는 찾기 쉬운 위치다.",
                    "labels": {"label": 4.2, "binary-label": 1},
                }
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    assert len(list(read_recipe("klue-sts", str(sts)))) == 2
    ynat = tmp_path / "ynat-v1.1_train.json"
    ynat.write_text(
        json.dumps(
            [
                {
                    "guid": "ynat-v1_train_00000",
                    "title": "유튜브 내달 2일까지 크리에이터 지원 공간 운영",
                    "label": "생활문화",
                }
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    assert [t for _, t in read_recipe("klue-ynat", str(ynat))] == ["유튜브 내달 2일까지 크리에이터 지원 공간 운영"]
    wiki = tmp_path / "kowiki.jsonl"
    wiki.write_text(
        json.dumps(
            {"id": "5", "title": "지미 카터", "text": "제임스 얼 카터 주니어는 미국의 제39대 대통령이다."},
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    assert [t for _, t in read_recipe("kowiki", str(wiki))] == ["제임스 얼 카터 주니어는 미국의 제39대 대통령이다."]


def test_nsmc_recipe_on_shared_data(shared_data):
    docs = []
    for _, text in read_recipe("nsmc", str(shared_data / "nsmc" / "test.tsv")):
        docs.append(text)
        if len(docs) == 100:
            break
    assert len(docs) == 100 and all(docs)


def test_embedded_source_reads():
    docs = list(read_source(SourceConfig(kind="embedded", max_docs=5), Counter()))
    assert len(docs) == 5 and all(len(t) > 20 for _, t in docs)


def test_hub_source_streams_with_datasets(tmp_path):
    import datasets  # noqa: F401  (a required dependency: its absence must fail, not skip)

    f = tmp_path / "local.jsonl"
    f.write_text(
        "\n".join(json.dumps({"id": i, "body": f"허브 문서 {i}"}, ensure_ascii=False) for i in range(3)),
        encoding="utf-8",
    )
    src = SourceConfig(kind="hub", path="json", data_files=str(f), text_field="body", streaming=True)
    assert [t for _, t in read_source(src, Counter())] == ["허브 문서 0", "허브 문서 1", "허브 문서 2"]
    with pytest.raises(DataError, match="could not load hub dataset"):
        list(read_source(SourceConfig(kind="hub", path=str(tmp_path / "no_such_dataset_dir")), Counter()))
