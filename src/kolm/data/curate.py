"""The data curation stage: sources -> normalize -> filter -> PII -> exact/near dedup -> split -> Parquet.

Two streaming passes keep memory bounded on inputs larger than RAM:

1. Documents are read in chunks; worker processes (`num_proc`, all cores by
   default) normalize, filter, redact and compute MinHash signatures; the
   parent drops exact duplicates (a set of 8-byte hashes) and writes the
   survivors to temporary shards while signatures go to a memmap file.
2. LSH resolves near-duplicate clusters; the temporary shards are streamed
   again, cluster members other than the first are dropped, and documents are
   split into train/validation by a seeded draw and written as the final shards.

Every step records documents and characters in/out, wall time and removal
reasons with examples; `kolm.data.report` turns that into curation_report.{json,md}.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from kolm.context import StageContext, StageResult
from kolm.data.config import DataConfig
from kolm.data.dedup import NearDuplicateIndex, minhash_signatures, text_hash
from kolm.data.filters import DocFilter
from kolm.data.io import ShardWriter
from kolm.data.normalize import make_normalizer
from kolm.data.pii import redact
from kolm.data.sources import read_source, source_name
from kolm.errors import DataError

__all__ = ["curate", "run", "LENGTH_BINS"]

# length histogram bins in characters (log-spaced; the last bin is open-ended)
LENGTH_BINS = np.array([0, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 1 << 40])
_EXAMPLE_CHARS = 160


def _short(text: str) -> str:
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= _EXAMPLE_CHARS else text[:_EXAMPLE_CHARS] + "…"


# ----------------------------------------------------------------------------
# Pass 1 worker: normalize, filter, redact, sign

_WORKER: dict[str, Any] = {}


def _init_worker(data_cfg: Any, seed: int) -> None:
    """Build the per-process functions once (pool initializer, or in-process for one worker)."""
    n = data_cfg.normalize
    _WORKER["normalize"] = make_normalizer(
        n.form, n.strip_html, n.remove_control, n.squash_repeats, n.urls, n.whitespace
    )
    _WORKER["filter"] = DocFilter(data_cfg.filters)
    _WORKER["cfg"] = data_cfg
    _WORKER["seed"] = seed


def _process_chunk(chunk: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Normalize -> filter -> PII -> MinHash one chunk of (id, text, source); returns survivors and stats."""
    cfg = _WORKER["cfg"]
    normalize: Callable[[str], str] = _WORKER["normalize"]
    flt: DocFilter = _WORKER["filter"]
    res: dict[str, Any] = {
        "chars_in": 0,
        "chars_norm": 0,
        "chars_filt": 0,
        "chars_pii": 0,
        "kept": [],
        "removed": Counter(),
        "examples": defaultdict(list),
        "pii": Counter(),
        "time": Counter(),
        "sigs": None,
        "hist_in": np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64),
        "boilerplate_lines": 0,
    }
    t0 = time.perf_counter()
    normed = []
    for did, text, src in chunk:
        res["chars_in"] += len(text)
        normed.append((did, normalize(text), src))
    t1 = time.perf_counter()
    res["hist_in"] += np.histogram([len(t) for _, t, _ in normed], LENGTH_BINS)[0]
    passed = []
    for did, text, src in normed:
        res["chars_norm"] += len(text)
        why = flt.check(text)
        if why is None:
            text, n_lines = flt.strip_boilerplate(text)
            res["boilerplate_lines"] += n_lines
            passed.append((did, text, src))
        else:
            name, detail = why
            res["removed"][name] += 1
            if len(res["examples"][name]) < 3:
                res["examples"][name].append({"id": did, "why": detail, "text": _short(text)})
    res["chars_filt"] = sum(len(t) for _, t, _ in passed)
    t2 = time.perf_counter()
    if cfg.pii.enabled:
        kinds = tuple(cfg.pii.kinds)
        passed = [(d, redact(t, kinds, res["pii"]), s) for d, t, s in passed]
    res["chars_pii"] = sum(len(t) for _, t, _ in passed)
    t3 = time.perf_counter()
    if cfg.dedup.near and passed:
        res["sigs"] = minhash_signatures(
            [t for _, t, _ in passed], cfg.dedup.ngram, cfg.dedup.num_perm, _WORKER["seed"]
        )
    t4 = time.perf_counter()
    res["kept"] = passed
    res["time"].update({"normalize": t1 - t0, "filters": t2 - t1, "pii": t3 - t2, "minhash": t4 - t3})
    res["examples"] = dict(res["examples"])
    return res


def _chunks(data_cfg: Any, issues: Counter, per_source: Counter) -> Iterator[list[tuple[str, str, str]]]:
    """All sources, in config order, as chunks of (id, text, source)."""
    chunk: list[tuple[str, str, str]] = []
    for src in data_cfg.sources:
        name = source_name(src)
        for did, text in read_source(src, issues):
            chunk.append((did, text, name))
            per_source[name] += 1
            if len(chunk) >= data_cfg.chunk_docs:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


# ----------------------------------------------------------------------------
# The whole curation


def curate(
    data_cfg: DataConfig,
    out: Path,
    seed: int = 0,
    log: Callable[[str], None] = print,
    task: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Curate `data_cfg.sources` into `out/train` and `out/validation`; return the report dict."""
    out = Path(out)
    work = out / "_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    num_proc = data_cfg.num_proc or os.cpu_count() or 1
    issues: Counter = Counter()
    per_source: Counter = Counter()
    totals = {"docs_in": 0, "chars_in": 0, "chars_norm": 0, "chars_filt": 0, "chars_pii": 0, "docs_filtered_out": 0}
    removed: Counter = Counter()
    examples: dict[str, list] = defaultdict(list)
    pii: Counter = Counter()
    boilerplate_lines = 0
    times: Counter = Counter()
    hist_in = np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64)
    hist_out = np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64)
    near = data_cfg.dedup
    index = NearDuplicateIndex(near.num_perm, near.bands, near.threshold, work) if near.near else None
    seen: set[bytes] = set()
    exact_removed, exact_examples = 0, []
    stage1 = ShardWriter(work / "stage1", shard_docs=data_cfg.shard_docs)
    bar = task("curate: read, normalize, filter, PII, MinHash", None) if task else None

    t_start = time.perf_counter()
    pool = None
    chunks = _chunks(data_cfg, issues, per_source)
    if num_proc > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(num_proc, initializer=_init_worker, initargs=(data_cfg, seed))
        results = pool.imap(_process_chunk, chunks, chunksize=1)
    else:
        _init_worker(data_cfg, seed)
        results = map(_process_chunk, chunks)
    try:
        for res in results:
            n_chunk = len(res["kept"]) + sum(res["removed"].values())
            totals["docs_in"] += n_chunk
            for k in ("chars_in", "chars_norm", "chars_filt", "chars_pii"):
                totals[k] += res[k]
            removed.update(res["removed"])
            for name, exs in res["examples"].items():
                examples[name].extend(exs[: 3 - len(examples[name])])
            pii.update(res["pii"])
            boilerplate_lines += res["boilerplate_lines"]
            times.update(res["time"])
            hist_in += res["hist_in"]
            t0 = time.perf_counter()
            keep_rows = []
            for i, (did, text, src) in enumerate(res["kept"]):
                h = text_hash(text)
                if data_cfg.dedup.exact and h in seen:
                    exact_removed += 1
                    if len(exact_examples) < 3:
                        exact_examples.append(
                            {"id": did, "why": "same text as an earlier document", "text": _short(text)}
                        )
                    continue
                seen.add(h)
                keep_rows.append(i)
                stage1.add(did, text, src)
            if index is not None and res["sigs"] is not None and keep_rows:
                index.add(res["sigs"][keep_rows])
            times["exact_dedup"] += time.perf_counter() - t0
            if bar:
                bar.advance(n_chunk)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    stage1.close()
    t_pass1 = time.perf_counter() - t_start
    if totals["docs_in"] == 0:
        raise DataError(
            "no documents were read from data.sources"
            + (f" ({'; '.join(issues)})" if issues else "")
            + "; check the paths, the text_field and the file format"
        )
    docs_after_filters = totals["docs_in"] - sum(removed.values())
    docs_after_exact = stage1.n_docs
    log(
        f"read {totals['docs_in']:,} documents; {docs_after_filters:,} pass the filters; {docs_after_exact:,} after exact dedup"
    )

    # -- near-duplicate clusters -------------------------------------------------
    t0 = time.perf_counter()
    if index is not None:
        labels, n_pairs = index.clusters()
    else:
        labels, n_pairs = np.arange(docs_after_exact), 0
    is_dup = labels != np.arange(len(labels))
    n_near = int(is_dup.sum())
    cluster_sizes = np.bincount(labels, minlength=len(labels)) if len(labels) else np.zeros(0, dtype=np.int64)
    n_clusters = int((cluster_sizes > 1).sum())
    shown = [int(r) for r in np.flatnonzero(cluster_sizes > 1)[: near.examples]]
    times["near_dedup_lsh"] += time.perf_counter() - t0

    # -- pass 2: drop near-duplicates, split, weight, write ------------------------
    t0 = time.perf_counter()
    n_keep = docs_after_exact - n_near
    rng = np.random.default_rng(seed)
    n_val = int(round(n_keep * data_cfg.val_fraction))
    if data_cfg.val_fraction > 0 and n_keep >= 2:
        n_val = max(1, n_val)  # tiny corpora still get a validation document
    val_mask = np.zeros(n_keep, dtype=bool)
    val_mask[rng.permutation(n_keep)[:n_val]] = True
    weights = {source_name(s): s.weight for s in data_cfg.sources}
    train_w = ShardWriter(out / "train", shard_docs=data_cfg.shard_docs)
    val_w = ShardWriter(out / "validation", shard_docs=data_cfg.shard_docs)
    cluster_texts: dict[int, list[str]] = defaultdict(list)
    shown_set = set(shown)
    import pyarrow.parquet as pq

    i = j = 0
    for f in sorted((work / "stage1").glob("part-*.parquet")):
        table = pq.read_table(f)
        for did, text, src in zip(*(table.column(c).to_pylist() for c in ("id", "text", "source"))):
            lab = int(labels[i])
            if lab in shown_set and len(cluster_texts[lab]) < 3:
                cluster_texts[lab].append(_short(text))
            if is_dup[i]:
                i += 1
                continue
            i += 1
            if val_mask[j]:
                val_w.add(did, text, src)
            else:
                w = weights.get(src, 1.0)
                repeats = int(w) + (1 if rng.random() < w - int(w) else 0)  # weight 0.5 keeps half, 2.0 repeats twice
                for r in range(repeats):
                    train_w.add(did if r == 0 else f"{did}#{r}", text, src)
            hist_out[np.searchsorted(LENGTH_BINS, len(text), side="right") - 1] += 1
            j += 1
    train_w.close()
    val_w.close()
    times["split_write"] += time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    if train_w.n_docs == 0:
        raise DataError(
            "curation kept no training documents; relax data.filters (e.g. data.filters.min_chars) or add data"
        )

    return {
        "sources": {name: {"docs": n, "weight": weights.get(name, 1.0)} for name, n in per_source.items()},
        "issues": dict(issues),
        "funnel": [
            {
                "step": "read",
                "docs_in": totals["docs_in"],
                "docs_out": totals["docs_in"],
                "chars_in": totals["chars_in"],
                "chars_out": totals["chars_in"],
            },
            {
                "step": "normalize",
                "docs_in": totals["docs_in"],
                "docs_out": totals["docs_in"],
                "chars_in": totals["chars_in"],
                "chars_out": totals["chars_norm"],
            },
            {
                "step": "filters",
                "docs_in": totals["docs_in"],
                "docs_out": docs_after_filters,
                "chars_in": totals["chars_norm"],
                "chars_out": totals["chars_filt"],
            },
            {
                "step": "pii",
                "docs_in": docs_after_filters,
                "docs_out": docs_after_filters,
                "chars_in": totals["chars_filt"],
                "chars_out": totals["chars_pii"],
            },
            {
                "step": "exact_dedup",
                "docs_in": docs_after_filters,
                "docs_out": docs_after_exact,
                "chars_in": totals["chars_pii"],
                "chars_out": stage1.n_chars,
            },
            {
                "step": "near_dedup",
                "docs_in": docs_after_exact,
                "docs_out": n_keep,
                "chars_in": stage1.n_chars,
                "chars_out": train_w.n_chars + val_w.n_chars,
            },
        ],
        "removed": {**dict(removed), "exact_duplicate": exact_removed, "near_duplicate": n_near},
        "examples": {**{k: v for k, v in examples.items()}, "exact_duplicate": exact_examples},
        "pii": {k: v for k, v in pii.items() if v},
        "boilerplate_lines_removed": boilerplate_lines,
        "near_dedup": {
            "clusters": n_clusters,
            "duplicates_removed": n_near,
            "verified_pairs": int(n_pairs),
            "ngram": near.ngram,
            "num_perm": near.num_perm,
            "bands": near.bands,
            "threshold": near.threshold,
            "examples": [cluster_texts[r] for r in shown],
        },
        "split": {
            "train_docs": train_w.n_docs,
            "train_chars": train_w.n_chars,
            "validation_docs": val_w.n_docs,
            "validation_chars": val_w.n_chars,
            "seed": seed,
            "val_fraction": data_cfg.val_fraction,
        },
        "length_histogram": {"bins": LENGTH_BINS[:-1].tolist(), "before": hist_in.tolist(), "after": hist_out.tolist()},
        "timing": {
            "num_proc": num_proc,
            "wall_s": round(time.perf_counter() - t_start, 2),
            "pass1_wall_s": round(t_pass1, 2),
            "cpu_s": {k: round(v, 2) for k, v in times.items()},
        },
    }


def run(ctx: StageContext) -> StageResult:
    """Stage `data`: curate the configured sources into Parquet shards and a curation report."""
    from kolm.data.report import write_report
    from kolm.data.sources import assets_dir, expand_paths

    cfg = ctx.cfg.data
    for src in cfg.sources:  # record inputs so a changed file re-runs the stage
        if src.kind == "embedded":
            ctx.input(assets_dir() / "corpus")
        elif src.kind in ("file", "recipe") and src.path:
            for f in expand_paths(src.path):
                ctx.input(f)
    with ctx.task("curate", total=None) as bar:
        report = curate(cfg, ctx.out, seed=ctx.cfg.seed, log=ctx.log, task=lambda *a, **k: bar)
    write_report(report, ctx.out)
    for problem, count in report["issues"].items():  # skipped input is never silent
        ctx.log(f"warning: {count:,} × {problem}")
    split = report["split"]
    ctx.log(f"train {split['train_docs']:,} docs / validation {split['validation_docs']:,} docs")
    return StageResult(
        outputs={
            name: ctx.output(ctx.out / rel)
            for name, rel in (
                ("train", "train"),
                ("validation", "validation"),
                ("report", "curation_report.md"),
                ("summary", "summary.md"),
            )
        },
        metrics={
            "docs_in": report["funnel"][0]["docs_in"],
            "train_docs": split["train_docs"],
            "validation_docs": split["validation_docs"],
            "train_chars": split["train_chars"],
            "removed": sum(report["removed"].values()),
            "near_dup_clusters": report["near_dedup"]["clusters"],
        },
    )
