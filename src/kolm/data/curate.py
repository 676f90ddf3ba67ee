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

`data.engine=ray` runs the same per-chunk work, deduplication functions, split
and report on Ray Data instead (kolm.data.ray_engine); both engines keep the
same documents in the same order. The pieces they share live here:
`process_chunk`, `Tally`, `split_plan`, `train_copies` and `build_report`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
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

__all__ = [
    "curate",
    "run",
    "LENGTH_BINS",
    "init_worker",
    "short_example",
    "process_chunk",
    "Tally",
    "split_plan",
    "train_copies",
    "length_histogram",
    "build_report",
    "check_read",
    "check_kept",
]

# length histogram bins in characters (log-spaced; the last bin is open-ended)
LENGTH_BINS = np.array([0, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 1 << 40])
_EXAMPLE_CHARS = 160


def short_example(text: str) -> str:
    """A document as one line of at most 160 characters, for report examples."""
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= _EXAMPLE_CHARS else text[:_EXAMPLE_CHARS] + "…"


# ----------------------------------------------------------------------------
# Pass 1 worker: normalize, filter, redact, sign

_WORKER: dict[str, Any] = {}


def init_worker(data_cfg: Any, seed: int) -> None:
    """Build the per-process functions once (pool initializer, or in-process for one worker)."""
    n = data_cfg.normalize
    _WORKER["normalize"] = make_normalizer(
        n.form, n.strip_html, n.remove_control, n.squash_repeats, n.urls, n.whitespace
    )
    _WORKER["filter"] = DocFilter(data_cfg.filters)
    _WORKER["cfg"] = data_cfg
    _WORKER["seed"] = seed


def process_chunk(chunk: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Normalize -> filter -> PII -> MinHash one chunk of (id, text, source); returns survivors and stats."""
    cfg = _WORKER["cfg"]
    normalize: Callable[[str], str] = _WORKER["normalize"]
    flt: DocFilter = _WORKER["filter"]
    res: dict[str, Any] = {
        "n_docs": len(chunk),
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
                res["examples"][name].append({"id": did, "why": detail, "text": short_example(text)})
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
# Pieces both engines share


@dataclass
class Tally:
    """What pass 1 counted, merged chunk by chunk in document order (so the examples are the first ones)."""

    docs_in: int = 0
    chars_in: int = 0
    chars_norm: int = 0
    chars_filt: int = 0
    chars_pii: int = 0
    removed: Counter = field(default_factory=Counter)
    examples: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    pii: Counter = field(default_factory=Counter)
    boilerplate_lines: int = 0
    times: Counter = field(default_factory=Counter)
    hist_in: np.ndarray = field(default_factory=lambda: np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64))

    def add(self, res: dict[str, Any]) -> None:
        """Merge one chunk's result of `process_chunk` (chunks must arrive in document order)."""
        self.docs_in += res["n_docs"]
        self.chars_in += res["chars_in"]
        self.chars_norm += res["chars_norm"]
        self.chars_filt += res["chars_filt"]
        self.chars_pii += res["chars_pii"]
        self.removed.update(res["removed"])
        for name, exs in res["examples"].items():
            self.examples[name].extend(exs[: 3 - len(self.examples[name])])
        self.pii.update(res["pii"])
        self.boilerplate_lines += res["boilerplate_lines"]
        self.times.update(res["time"])
        self.hist_in += res["hist_in"]

    @property
    def docs_after_filters(self) -> int:
        return self.docs_in - sum(self.removed.values())


def check_read(docs_in: int, issues: Counter) -> None:
    """DataError when no document was read at all."""
    if docs_in == 0:
        raise DataError(
            "no documents were read from data.sources"
            + (f" ({'; '.join(issues)})" if issues else "")
            + "; check the paths, the text_field and the file format"
        )


def check_kept(train_docs: int) -> None:
    """DataError when curation kept nothing to train on."""
    if train_docs == 0:
        raise DataError(
            "curation kept no training documents; relax data.filters (e.g. data.filters.min_chars) or add data"
        )


def split_plan(n_keep: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded split of the kept documents, by their position in document order.

    Returns (is_val, draw): a validation mask and, for training documents, the
    uniform draw that rounds a fractional source weight (see `train_copies`).
    """
    rng = np.random.default_rng(seed)
    n_val = int(round(n_keep * val_fraction))
    if val_fraction > 0 and n_keep >= 2:
        n_val = max(1, n_val)  # tiny corpora still get a validation document
    is_val = np.zeros(n_keep, dtype=bool)
    is_val[rng.permutation(n_keep)[:n_val]] = True
    draw = np.full(n_keep, np.nan)
    draw[~is_val] = rng.random(n_keep - n_val)
    return is_val, draw


def train_copies(weight: Any, draw: Any) -> Any:
    """Copies of a training document of a source with `weight`: 0.5 keeps half, 2.0 repeats twice.

    Scalars or arrays; a NaN draw (a validation document) rounds down.
    """
    whole = np.floor(weight)
    return (whole + (np.asarray(draw) < weight - whole)).astype(np.int64)


def length_histogram(lengths: np.ndarray) -> np.ndarray:
    """Documents per `LENGTH_BINS` bin."""
    return np.histogram(lengths, LENGTH_BINS)[0]


def build_report(
    data_cfg: DataConfig,
    seed: int,
    tally: Tally,
    per_source: Counter,
    issues: Counter,
    exact: dict[str, Any],
    near: dict[str, Any],
    split: dict[str, int],
    hist_out: np.ndarray,
    timing: dict[str, Any],
) -> dict[str, Any]:
    """The curation report (kolm.data.report writes it), the same for both engines.

    `exact`: docs_out, chars_out, removed, examples. `near`: clusters,
    duplicates_removed, verified_pairs, examples. `split`: train/validation
    docs and chars. `timing`: engine, num_proc, wall_s, pass1_wall_s, cpu_s.
    """
    weights = {source_name(s): s.weight for s in data_cfg.sources}
    n_keep = exact["docs_out"] - near["duplicates_removed"]
    d = data_cfg.dedup

    def step(name: str, docs_in: int, docs_out: int, chars_in: int, chars_out: int) -> dict[str, Any]:
        return {"step": name, "docs_in": docs_in, "docs_out": docs_out, "chars_in": chars_in, "chars_out": chars_out}

    t = tally
    kept = t.docs_after_filters
    return {
        "sources": {name: {"docs": n, "weight": weights.get(name, 1.0)} for name, n in per_source.items()},
        "issues": dict(issues),
        "funnel": [
            step("read", t.docs_in, t.docs_in, t.chars_in, t.chars_in),
            step("normalize", t.docs_in, t.docs_in, t.chars_in, t.chars_norm),
            step("filters", t.docs_in, kept, t.chars_norm, t.chars_filt),
            step("pii", kept, kept, t.chars_filt, t.chars_pii),
            step("exact_dedup", kept, exact["docs_out"], t.chars_pii, exact["chars_out"]),
            step(
                "near_dedup",
                exact["docs_out"],
                n_keep,
                exact["chars_out"],
                split["train_chars"] + split["validation_chars"],
            ),
        ],
        "removed": {
            **dict(t.removed),
            "exact_duplicate": exact["removed"],
            "near_duplicate": near["duplicates_removed"],
        },
        "examples": {**dict(t.examples), "exact_duplicate": exact["examples"]},
        "pii": {k: v for k, v in t.pii.items() if v},
        "boilerplate_lines_removed": t.boilerplate_lines,
        "near_dedup": {
            "clusters": near["clusters"],
            "duplicates_removed": near["duplicates_removed"],
            "verified_pairs": int(near["verified_pairs"]),
            "ngram": d.ngram,
            "num_perm": d.num_perm,
            "bands": d.bands,
            "threshold": d.threshold,
            "examples": near["examples"],
        },
        "split": {**split, "seed": seed, "val_fraction": data_cfg.val_fraction},
        "length_histogram": {
            "bins": LENGTH_BINS[:-1].tolist(),
            "before": t.hist_in.tolist(),
            "after": hist_out.tolist(),
        },
        "timing": {**timing, "cpu_s": {k: round(v, 2) for k, v in timing["cpu_s"].items()}},
    }


# ----------------------------------------------------------------------------
# The whole curation


def curate(
    data_cfg: DataConfig,
    out: Path,
    seed: int = 0,
    log: Callable[[str], None] = print,
    task: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Curate `data_cfg.sources` into `out/train` and `out/validation`; return the report dict.

    `data_cfg.engine` picks where the work runs: worker processes of this
    machine (local) or Ray Data (ray); the outputs and the report are the same.
    """
    if data_cfg.engine == "ray":
        from kolm.data.ray_engine import curate_ray

        return curate_ray(data_cfg, Path(out), seed=seed, log=log, task=task)
    return _curate_local(data_cfg, Path(out), seed, log, task)


def _curate_local(
    data_cfg: DataConfig, out: Path, seed: int, log: Callable[[str], None], task: Callable[..., Any] | None
) -> dict[str, Any]:
    work = out / "_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    num_proc = data_cfg.num_proc or os.cpu_count() or 1
    issues: Counter = Counter()
    per_source: Counter = Counter()
    tally = Tally()
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
        pool = ctx.Pool(num_proc, initializer=init_worker, initargs=(data_cfg, seed))
        results = pool.imap(process_chunk, chunks, chunksize=1)
    else:
        init_worker(data_cfg, seed)
        results = map(process_chunk, chunks)
    try:
        for res in results:
            tally.add(res)
            t0 = time.perf_counter()
            keep_rows = []
            for i, (did, text, src) in enumerate(res["kept"]):
                h = text_hash(text)
                if data_cfg.dedup.exact and h in seen:
                    exact_removed += 1
                    if len(exact_examples) < 3:
                        exact_examples.append(
                            {"id": did, "why": "same text as an earlier document", "text": short_example(text)}
                        )
                    continue
                seen.add(h)
                keep_rows.append(i)
                stage1.add(did, text, src)
            if index is not None and res["sigs"] is not None and keep_rows:
                index.add(res["sigs"][keep_rows])
            tally.times["exact_dedup"] += time.perf_counter() - t0
            if bar:
                bar.advance(res["n_docs"])
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    stage1.close()
    t_pass1 = time.perf_counter() - t_start
    check_read(tally.docs_in, issues)
    docs_after_exact = stage1.n_docs
    log(
        f"read {tally.docs_in:,} documents; {tally.docs_after_filters:,} pass the filters; "
        f"{docs_after_exact:,} after exact dedup"
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
    shown = [int(r) for r in np.flatnonzero(cluster_sizes > 1)[: near.examples]]
    tally.times["near_dedup_lsh"] += time.perf_counter() - t0

    # -- pass 2: drop near-duplicates, split, weight, write ------------------------
    t0 = time.perf_counter()
    n_keep = docs_after_exact - n_near
    is_val, draw = split_plan(n_keep, data_cfg.val_fraction, seed)
    weights = {source_name(s): s.weight for s in data_cfg.sources}
    train_w = ShardWriter(out / "train", shard_docs=data_cfg.shard_docs)
    val_w = ShardWriter(out / "validation", shard_docs=data_cfg.shard_docs)
    hist_out = np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64)
    cluster_texts: dict[int, list[str]] = defaultdict(list)
    shown_set = set(shown)
    import pyarrow.parquet as pq

    i = j = 0
    for f in sorted((work / "stage1").glob("part-*.parquet")):
        table = pq.read_table(f)
        for did, text, src in zip(*(table.column(c).to_pylist() for c in ("id", "text", "source"))):
            lab = int(labels[i])
            if lab in shown_set and len(cluster_texts[lab]) < 3:
                cluster_texts[lab].append(short_example(text))
            i += 1
            if is_dup[i - 1]:
                continue
            if is_val[j]:
                val_w.add(did, text, src)
            else:
                for r in range(train_copies(weights.get(src, 1.0), draw[j])):
                    train_w.add(did if r == 0 else f"{did}#{r}", text, src)
            hist_out[np.searchsorted(LENGTH_BINS, len(text), side="right") - 1] += 1
            j += 1
    train_w.close()
    val_w.close()
    tally.times["split_write"] += time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    check_kept(train_w.n_docs)
    return build_report(
        data_cfg,
        seed,
        tally,
        per_source,
        issues,
        exact={
            "docs_out": docs_after_exact,
            "chars_out": stage1.n_chars,
            "removed": exact_removed,
            "examples": exact_examples,
        },
        near={
            "clusters": int((cluster_sizes > 1).sum()),
            "duplicates_removed": n_near,
            "verified_pairs": n_pairs,
            "examples": [cluster_texts[r] for r in shown],
        },
        split={
            "train_docs": train_w.n_docs,
            "train_chars": train_w.n_chars,
            "validation_docs": val_w.n_docs,
            "validation_chars": val_w.n_chars,
        },
        hist_out=hist_out,
        timing={
            "engine": "local",
            "num_proc": num_proc,
            "wall_s": round(time.perf_counter() - t_start, 2),
            "pass1_wall_s": round(t_pass1, 2),
            "cpu_s": dict(tally.times),
        },
    )


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
