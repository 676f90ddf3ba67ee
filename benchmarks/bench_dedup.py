"""Benchmark: near-duplicate removal on the 662K raw reviews: kolm local vs kolm on Ray vs datatrove's MinHash.

Run:  .venv/bin/python benchmarks/bench_dedup.py [--max-docs 0] [--cores 2] [--skip ray,datatrove]
Needs `pip install datatrove` for the datatrove column (and `kolm[dist]` for Ray).

All three read the same JSON lines and use 5-character shingles, 128 permutations in 16 bands of 8.
kolm runs its curation with only near-duplicate removal on (no filters, no PII, no exact dedup, no
validation split) and verifies LSH candidates by estimated Jaccard >= --threshold; datatrove keeps every
candidate that shares a band (no verification) and shingles its own simplified text (lower case, no
punctuation, digits folded); its word tokenizer is replaced by one that yields characters so that its
n-grams are character n-grams like ours. Prints wall time, documents/s per core, documents removed and
the Jaccard similarity of the removed id sets.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "../shared/data/corpus/nsmc_reviews.jsonl.gz"
NGRAM, NUM_PERM, BANDS = 5, 128, 16


def write_input(folder: Path, max_docs: int) -> int:
    """The first `max_docs` reviews (0 = all) as `folder/bench.jsonl` with ids 0..n-1; returns n."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    with gzip.open(CORPUS, "rt", encoding="utf-8") as src, open(folder / "bench.jsonl", "w", encoding="utf-8") as dst:
        for line in src:
            if max_docs and n >= max_docs:
                break
            dst.write(json.dumps({"id": str(n), "text": json.loads(line)["text"]}, ensure_ascii=False) + "\n")
            n += 1
    return n


def run_kolm(engine: str, folder: Path, work: Path, n: int, cores: int, threshold: float) -> tuple[float, set[str]]:
    from kolm.config import load_config
    from kolm.data.curate import curate

    overrides = [
        f"data.sources=[{{kind: file, path: '{folder / 'bench.jsonl'}'}}]",
        f"data.engine={engine}",
        f"data.num_proc={cores}",
        "data.val_fraction=0",
        "data.pii.enabled=false",
        "data.dedup.exact=false",
        f"data.dedup.ngram={NGRAM}",
        f"data.dedup.num_perm={NUM_PERM}",
        f"data.dedup.bands={BANDS}",
        f"data.dedup.threshold={threshold}",
        "data.filters.min_chars=0",
        "data.filters.min_eojeol=0",
        "data.filters.min_hangul_ratio=0",
        "data.filters.max_symbol_ratio=1",
        "data.filters.max_digit_ratio=1",
        "data.filters.max_url_ratio=1",
        "data.filters.max_dup_line_frac=1",
        "data.filters.max_dup_para_frac=1",
        "data.filters.max_top_ngram_frac={}",
        "data.filters.boilerplate=[]",
    ]
    cfg = load_config(None, overrides)
    out = work / f"kolm-{engine}"
    t = time.perf_counter()
    report = curate(cfg.data, out, seed=1, log=lambda _: None)
    wall = time.perf_counter() - t
    assert report["funnel"][2]["docs_out"] == n, "the benchmark keeps every document up to near dedup"
    import pyarrow.parquet as pq

    kept = {
        i.split(":", 1)[1]
        for f in sorted((out / "train").glob("*.parquet"))
        for i in pq.read_table(f)["id"].to_pylist()
    }
    return wall, {str(i) for i in range(n)} - kept


class _Characters:
    """A datatrove word tokenizer that yields characters (spaces dropped), so its n-grams are character n-grams."""

    def word_tokenize(self, text: str, language: str | None = None) -> list[str]:
        return [c for c in text if not c.isspace()]


def run_datatrove(folder: Path, work: Path, n: int, cores: int) -> tuple[float, set[str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    # sha1: datatrove 0.10's xxhash wrapper passes str to xxhash 4, which wants bytes
    config = MinhashConfig(
        n_grams=NGRAM,
        num_buckets=BANDS,
        hashes_per_bucket=NUM_PERM // BANDS,
        seed=1,
        hash_config=HashConfig(precision=64, hash_fc="sha1"),
    )
    base = work / "datatrove"
    from datatrove.utils.typeshelper import Languages

    signature = MinhashDedupSignature(output_folder=str(base / "signatures"), config=config, language=Languages.korean)
    signature.word_tokenizer = _Characters()
    reader = JsonlReader(str(folder))
    stages = [
        ([reader, signature], cores),
        ([MinhashDedupBuckets(str(base / "signatures"), str(base / "buckets"), config=config)], BANDS),
        ([MinhashDedupCluster(str(base / "buckets"), str(base / "remove_ids"), config=config)], 1),
        (
            [
                JsonlReader(str(folder)),
                MinhashDedupFilter(
                    str(base / "remove_ids"), exclusion_writer=JsonlWriter(str(base / "removed"), compression=None)
                ),
                JsonlWriter(str(base / "kept"), compression=None),
            ],
            1,
        ),
    ]
    t = time.perf_counter()
    for k, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=cores, logging_dir=str(base / f"logs{k}"), skip_completed=False
        ).run()
    wall = time.perf_counter() - t
    removed = set()
    for f in (base / "removed").glob("*.jsonl"):
        removed |= {json.loads(line)["id"] for line in f.read_text(encoding="utf-8").splitlines() if line}
    return wall, removed


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-docs", type=int, default=0, help="first N reviews (0 = all 662K)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--skip", default="", help="comma-separated: local, ray, datatrove")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    if not CORPUS.is_file():
        raise SystemExit(f"corpus not found: {CORPUS}")
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.work or tempfile.mkdtemp(prefix="kolm_bench_dedup_"))
    shutil.rmtree(work, ignore_errors=True)
    n = write_input(work / "input", args.max_docs)
    results: dict[str, tuple[float, set[str]]] = {}
    for name in ("local", "ray"):
        if name not in skip:
            results[f"kolm {name}"] = run_kolm(name, work / "input", work, n, args.cores, args.threshold)
    if "datatrove" not in skip:
        results["datatrove"] = run_datatrove(work / "input", work, n, args.cores)
    print(f"{n:,} reviews, {args.cores} cores, char {NGRAM}-grams, {NUM_PERM} permutations, {BANDS} bands")
    print("| engine | wall s | docs/s per core | removed |")
    print("| --- | ---: | ---: | ---: |")
    for name, (wall, removed) in results.items():
        print(f"| {name} | {wall:.1f} | {n / wall / args.cores:,.0f} | {len(removed):,} |")
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            print(f"Jaccard of removed ids, {a} vs {b}: {jaccard(results[a][1], results[b][1]):.3f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
