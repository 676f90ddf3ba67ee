"""The Ray engine (`data.engine=ray`) on a local 2-CPU Ray gives the local engine's documents, split and report."""

from __future__ import annotations

import json
import logging
import os
import random

import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from kolm.config import load_config  # noqa: E402
from kolm.data.curate import curate  # noqa: E402

BASE = [
    "배우들의 연기가 정말 훌륭했고 이야기 전개도 탄탄해서 끝까지 몰입해서 봤습니다",
    "음악이 아름답고 화면이 예뻐서 극장에서 다시 보고 싶은 영화였어요",
    "중간에 조금 지루했지만 마지막 반전 덕분에 만족스러운 작품이었습니다",
    "원작 소설을 읽고 봤는데 생각보다 각색이 잘 되어 있어서 놀랐어요",
]
WORDS = (
    "오늘 영화 배우 연기 이야기 음악 장면 감독 결말 주인공 친구 극장 시간 기대 감동 웃음 눈물 배경 대사 편집".split()
)


def _corpus(tmp_path):
    """Two files with planted exact duplicates, near-duplicates (also across files), PII and junk."""
    rng = random.Random(7)
    rows_a, rows_b = [], []
    for i in range(60):
        rows_a.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + f" 리뷰 {i}번")
    for base in BASE:
        rows_a += [base, base]  # exact duplicates
        rows_a.append(base + " 강력 추천합니다")  # near-duplicate
        rows_b.append(base.replace("정말", "진짜") + " 강력 추천합니다")  # near-duplicate in the other file
        rows_b.append(base)  # exact duplicate across files
    rows_b += [
        "문의는 hong@example.com 또는 010-1234-5678 으로 연락 주세요. 답변은 빠르게 드리겠습니다.",
        "환불 요청은 kim.minsu@test.co.kr 로 보내 주시고 결제한 카드 4111-1111-1111-1111 번호는 적지 마세요",
        "짧음",
        "English only text that is long enough to pass the length check of the filters.",
        "<p>HTML &amp; 태그가 섞인 리뷰입니다ㅋㅋㅋㅋㅋㅋ 그래도 내용은 괜찮은 편이에요</p>",
    ]
    rows_b += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + f" 후기 {i}" for i in range(40)]
    a, b = tmp_path / "in" / "a.jsonl", tmp_path / "in" / "b.jsonl"
    a.parent.mkdir()
    for path, rows in ((a, rows_a), (b, rows_b)):
        with path.open("w", encoding="utf-8") as fh:
            for i, t in enumerate(rows):
                fh.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
            fh.write("{broken\n")
    return tmp_path / "in"


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=2,
        object_store_memory=150 * 1024**2,
        logging_level=logging.WARNING,
        log_to_driver=False,
        include_dashboard=False,
    )
    yield
    ray.shutdown()


def _outputs(out):
    rows = {}
    for split in ("train", "validation"):
        files = sorted((out / split).glob("*.parquet"))
        assert files, split
        tables = [pq.read_table(f) for f in files]
        rows[split] = [r for t in tables for r in zip(*(t.column(c).to_pylist() for c in ("id", "text", "source")))]
    return rows


def test_ray_engine_equals_local(tmp_path, local_ray):
    folder = _corpus(tmp_path)
    common = [
        f"data.sources=[{{kind: file, path: '{folder}', weight: 1.5}}, {{kind: embedded, max_docs: 40, weight: 2.0}}]",
        "data.chunk_docs=16",
        "data.val_fraction=0.1",
        "data.filters.min_chars=10",
        "data.dedup.threshold=0.5",
    ]
    reports, outputs = {}, {}
    for engine in ("local", "ray"):
        cfg = load_config(None, [*common, f"data.engine={engine}", "data.num_proc=1"], run_dir=tmp_path / engine)
        out = tmp_path / engine / "data"
        reports[engine] = curate(cfg.data, out, seed=3, log=lambda _: None)
        outputs[engine] = _outputs(out)
    local, dist = reports["local"], reports["ray"]
    assert local["timing"]["engine"] == "local" and dist["timing"]["engine"] == "ray"
    assert dist["timing"]["num_proc"] == 2
    for key in local:
        if key != "timing":
            assert dist[key] == local[key], key
    # the corpus exercises what it should
    assert local["removed"]["exact_duplicate"] >= 8 and local["removed"]["near_duplicate"] >= 4
    assert local["near_dedup"]["clusters"] >= 4 and len(local["near_dedup"]["examples"]) == 3
    assert local["pii"]["email"] == 2 and local["pii"]["phone"] == 1 and local["pii"]["card"] == 1
    assert any("broken JSON" in k for k in local["issues"])
    assert local["split"]["validation_docs"] >= 5
    # same documents, same order, same split, same weighted copies
    assert outputs["ray"] == outputs["local"]
    ids = [i for i, _, _ in outputs["local"]["train"]]
    assert any(i.endswith("#1") for i in ids)  # weight 2.0 and 1.5 repeat documents


def test_ray_engine_user_errors(tmp_path, local_ray):
    from kolm.errors import DataError

    missing = load_config(
        None, [f"data.sources=[{{kind: file, path: '{tmp_path}/nope.jsonl'}}]", "data.engine=ray"], run_dir=tmp_path
    )
    with pytest.raises(DataError, match="not found"):
        curate(missing.data, tmp_path / "a", log=lambda _: None)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    nothing = load_config(
        None, [f"data.sources=[{{kind: file, path: '{empty}'}}]", "data.engine=ray"], run_dir=tmp_path
    )
    with pytest.raises(DataError, match="no documents"):
        curate(nothing.data, tmp_path / "b", log=lambda _: None)
