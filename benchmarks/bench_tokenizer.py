"""Benchmark: 32K-vocab tokenizers trained on the curated NSMC review corpus, measured on held-out text.

Run (after benchmarks/bench_curate.py wrote /tmp/kolm_bench_curate):
  .venv/bin/python benchmarks/bench_tokenizer.py [--data /tmp/kolm_bench_curate] [--vocab 32000] [--train-docs 200000]
Trains byte-level BPE, Unigram and morpheme-aware BPE (Kiwi pre-segmentation) on the same documents and
compares them on held-out reviews (data/validation) and on movie_synopses.jsonl (formal text).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYNOPSES = ROOT / "../shared/data/corpus/movie_synopses.jsonl"
KEYS = (
    "chars_per_token",
    "fertility",
    "split_eojeol_share",
    "boundary_agreement",
    "unk_or_byte_rate",
    "vocab_used",
    "round_trip",
    "mb_per_s_single",
    "mb_per_s_batch",
    "train_time_s",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/tmp/kolm_bench_curate")
    ap.add_argument("--out", default="/tmp/kolm_bench_tokenizer")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--train-docs", type=int, default=200_000)
    ap.add_argument("--heldout-docs", type=int, default=5000)
    ap.add_argument("--kiwi-docs", type=int, default=1000)
    ap.add_argument("--kinds", default="bytelevel_bpe,unigram,morpheme_bpe")
    args = ap.parse_args()
    from kolm.config import load_config
    from kolm.data.io import read_split
    from kolm.tokenizer.compare import compare_dirs
    from kolm.tokenizer.train import save_tokenizer, train_tokenizer

    cfg = load_config(None, [f"tokenizer.vocab_size={args.vocab}"]).tokenizer
    texts = []
    for t in read_split(args.data, "train"):
        texts.append(t)
        if len(texts) >= args.train_docs:
            break
    print(f"training on {len(texts):,} curated reviews ({sum(map(len, texts)):,} chars), vocab {args.vocab}")
    out = Path(args.out)
    dirs = {}
    for kind in args.kinds.split(","):
        t0 = time.perf_counter()
        tok, stats = train_tokenizer(kind, texts, cfg)
        save_tokenizer(tok, out / kind, stats)
        dirs[kind] = out / kind
        print(
            f"{kind}: trained in {time.perf_counter() - t0:.1f} s (Kiwi pre-segmentation {stats['kiwi_presegment_s']} s)"
        )
    heldout = []
    for t in read_split(args.data, "validation"):
        heldout.append(t)
        if len(heldout) >= args.heldout_docs:
            break
    synopses = [json.loads(line)["text"] for line in SYNOPSES.read_text(encoding="utf-8").splitlines() if line.strip()]
    for name, sample in (("reviews", heldout), ("synopses", synopses)):
        rep = compare_dirs(
            dirs,
            sample,
            out / f"compare_{name}",
            ["한국어 자연어 처리는 매우 흥미로운 분야입니다."],
            kiwi_docs=min(args.kiwi_docs, len(sample)),
            log=lambda m: None,
        )
        print(f"\n{name}: {rep['docs']:,} docs, {rep['chars']:,} chars")
        print("| tokenizer | " + " | ".join(KEYS) + " |")
        print("| --- | " + " | ".join("---:" for _ in KEYS) + " |")
        for kind, m in rep["results"].items():
            print(f"| {kind} | " + " | ".join(str(m.get(k)) for k in KEYS) + " |")
        print("segmentation:", {k: " · ".join(v[0]) for k, v in rep["segmentations"]["pieces"].items()})


if __name__ == "__main__":
    main()
