"""Benchmark: curation of the 662K-review raw NSMC corpus (../shared/data/corpus/nsmc_reviews.jsonl.gz).

Run:  .venv/bin/python benchmarks/bench_curate.py [--engine local|ray] [--num-proc 2] [--max-docs 0] [--out /tmp/kolm_bench_curate]
      (--engine ray [--ray-address auto] runs the same curation on Ray Data: a local Ray with --num-proc CPUs, or a cluster)
Prints wall time, documents/s per step, documents removed per filter and the driver's peak memory
(record them in benchmarks/RESULTS.md).
Also compares the vectorized MinHash with a datasketch loop on a sample.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "../shared/data/corpus/nsmc_reviews.jsonl.gz"


def minhash_compare(n: int = 20_000) -> None:
    """numpy MinHash vs datasketch.MinHash on the first n reviews (128 permutations, char 5-grams)."""
    from kolm.data.dedup import minhash_signatures

    texts = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        for line, _ in zip(fh, range(n)):
            texts.append(json.loads(line)["text"])
    t = time.perf_counter()
    minhash_signatures(texts, 5, 128)
    t_np = time.perf_counter() - t
    try:
        from datasketch import MinHash
    except ImportError:
        print(f"minhash numpy: {n / t_np:,.0f} docs/s (datasketch not installed)")
        return
    t = time.perf_counter()
    for x in texts:
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([x[i : i + 5].encode() for i in range(max(len(x) - 4, 1))])
    t_ds = time.perf_counter() - t
    print(
        f"minhash on {n:,} reviews: numpy {n / t_np:,.0f} docs/s, datasketch {n / t_ds:,.0f} docs/s ({t_ds / t_np:.1f}x)"
    )


def shard_corpus(folder: Path, shards: int, max_docs: int) -> Path:
    """The corpus (first max_docs lines, 0 = all) as `shards` JSON-lines files, in order."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        lines = [line for line, _ in zip(fh, range(max_docs or 1 << 62))]
    per = -(-len(lines) // shards)
    for k in range(shards):
        (folder / f"part-{k:03d}.jsonl").write_text("".join(lines[k * per : (k + 1) * per]), encoding="utf-8")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["local", "ray"], default="local")
    ap.add_argument("--ray-address", default=None, help="engine=ray: a running cluster ('auto'); default a local Ray")
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument(
        "--shards",
        type=int,
        default=8,
        help="engine=ray: split the corpus into this many files (Ray reads one per task)",
    )
    ap.add_argument("--max-docs", type=int, default=0)
    ap.add_argument("--min-chars", type=int, default=10)
    ap.add_argument("--out", default="/tmp/kolm_bench_curate")
    ap.add_argument("--skip-minhash-compare", action="store_true")
    args = ap.parse_args()
    if not CORPUS.is_file():
        raise SystemExit(f"corpus not found: {CORPUS}")
    from kolm.config import load_config
    from kolm.data.curate import curate

    source = CORPUS
    if args.engine == "ray" and args.shards > 1:  # the Ray engine parallelizes reading over input files
        source = shard_corpus(Path(args.out + "_input"), args.shards, args.max_docs)
    from kolm.data.report import funnel_markdown, write_report

    cfg = load_config(
        None,
        [
            f"data.sources=[{{kind: file, path: '{source}', max_docs: {0 if source != CORPUS else args.max_docs}}}]",
            f"data.num_proc={args.num_proc}",
            f"data.filters.min_chars={args.min_chars}",
            f"data.engine={args.engine}",
            *([f"data.ray_address={args.ray_address}"] if args.ray_address else []),
        ],
    )
    t = time.perf_counter()
    report = curate(cfg.data, Path(args.out), seed=1234)
    wall = time.perf_counter() - t
    write_report(report, Path(args.out))
    n = report["funnel"][0]["docs_in"]
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(
        f"curated {n:,} docs in {wall:.1f} s wall ({n / wall:,.0f} docs/s) with engine={args.engine}, "
        f"{report['timing']['num_proc']} processes/CPUs; driver peak RSS {peak_mb:,.0f} MB"
    )
    print(funnel_markdown(report))
    print("seconds (docs/s) per step (worker CPU for the per-document steps, wall for the others):")
    for step, sec in report["timing"]["cpu_s"].items():
        print(f"  {step:15s} {sec:8.1f} s  ({n / max(sec, 1e-9):,.0f} docs/s)")
    print("removed:", json.dumps(report["removed"], ensure_ascii=False))
    print("pii:", report["pii"], "near clusters:", report["near_dedup"]["clusters"])
    print("split:", report["split"])
    if not args.skip_minhash_compare:
        minhash_compare()


if __name__ == "__main__":
    main()
