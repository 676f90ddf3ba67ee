"""Data curation on Ray Data (`data.engine=ray`): the local engine's steps as Ray Data transformations.

The per-document work, the dedup functions, the split and the report are the
ones of the local engine (kolm.data.curate, kolm.data.dedup); Ray schedules
the tasks and moves the data. Every document gets a `key` that grows in the
local engine's reading order (input unit << 40 | position), so "first" means
the same document in both engines and the outputs are equal.

1. Read and process: one row per input file (or per source when it is a hub
   dataset or has `max_docs`); a `map_batches` generator reads it with
   kolm.data.sources and runs `process_chunk` (normalize, filter, PII, MinHash)
   on chunks of `chunk_docs`, emitting the surviving documents plus one row of
   counts per chunk for the report.
2. Exact dedup: a groupby on a partition of the content hash; inside each
   group the smallest key of every hash stays.
3. Near dedup: one row per (document, band); a groupby on a partition of the
   band hash gives each bucket's candidate pairs (`star_pairs`). The driver
   receives the candidate pairs and the signatures of their documents only,
   verifies them and finds connected components: its memory grows with the
   near-duplicate candidates, not with the corpus.
4. Split: survivors counted per chunk give each chunk's offset in document
   order; a groupby on the chunk ranks documents, and `split_plan` (the local
   engine's seeded draw) decides validation, training and copies.
5. Sort by key and write Parquet shards from the workers (`write_parquet`).

Groupbys use `data.ray_partitions` partitions (0: the cluster's CPUs, more
when the data is large), grouping on a partition column rather than on every
key so that each group is one vectorized numpy call.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from kolm.data.config import DataConfig
from kolm.data.curate import (
    Tally,
    build_report,
    check_kept,
    check_read,
    init_worker,
    length_histogram,
    process_chunk,
    short_example,
    split_plan,
    train_copies,
)
from kolm.data.dedup import band_hashes, components, hash_array, star_pairs, verified
from kolm.data.io import ShardWriter
from kolm.data.sources import is_compressed, read_source, read_source_file, source_files, source_name
from kolm.errors import KolmError

__all__ = ["curate_ray", "read_units"]

_UNIT_SHIFT = 40  # key = unit << 40 | position in the unit: 2^40 documents per file, 2^23 files
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_TARGET_GROUP_BYTES = 256 << 20  # aim for groups of about this size when choosing partitions
_READY: dict[str, Any] = {}


def read_units(data_cfg: DataConfig) -> list[dict[str, Any]]:
    """Input units in reading order: one per file, or one per source for hub sources and sources with max_docs."""
    units: list[dict[str, Any]] = []
    for s, src in enumerate(data_cfg.sources):
        files = source_files(src)
        if files is None or src.max_docs:
            units.append({"unit": len(units), "src": s, "path": ""})
        else:
            units += [{"unit": len(units) + k, "src": s, "path": str(f)} for k, f in enumerate(files)]
    return units


def _part(values: np.ndarray, parts: int) -> np.ndarray:
    """Partition of each value (a Fibonacci hash, so that keys that are multiples of anything still spread)."""
    return ((values.astype(np.uint64) * _GOLD) >> np.uint64(33)) % np.uint64(parts)


# ----------------------------------------------------------------------------
# Step 1: read and process (runs in Ray tasks)


def _chunk_batch(
    first_key: int, chunk: list[tuple[str, str, str]], issues: Counter, name: str, num_perm: int, near: bool
) -> dict[str, np.ndarray]:
    """Survivors of one chunk as rows, plus one counts row (key -1) for the report."""
    res = process_chunk(chunk) if chunk else None
    kept = res["kept"] if res else []
    n = len(kept)
    stats = None
    if res is not None:
        stats = {k: v for k, v in res.items() if k not in ("kept", "sigs")}
    row_stats = pickle.dumps({"res": stats, "issues": dict(issues), "source": name})
    texts = [t for _, t, _ in kept]
    batch = {
        "key": np.concatenate([first_key + np.arange(n, dtype=np.int64), [-1]]),
        "chunk": np.full(n + 1, first_key, dtype=np.int64),
        "id": np.array([d for d, _, _ in kept] + [""], dtype=object),
        "text": np.array(texts + [""], dtype=object),
        "source": np.array([name] * (n + 1), dtype=object),
        "hash": np.concatenate([hash_array(texts), np.zeros(1, dtype=np.uint64)]),
        "stats": np.array([b""] * n + [row_stats], dtype=object),
    }
    if near:
        sigs = res["sigs"] if res is not None and res["sigs"] is not None else np.zeros((0, num_perm), np.uint32)
        batch["sig"] = np.concatenate([sigs, np.zeros((1, num_perm), dtype=np.uint32)])
    return batch


def _read_and_process(
    batch: dict[str, np.ndarray], data_cfg: DataConfig, seed: int, token: str
) -> Iterator[dict[str, np.ndarray]]:
    if _READY.get("token") != token:  # once per worker process and run
        init_worker(data_cfg, seed)
        _READY["token"] = token
    for unit, s, path in zip(batch["unit"], batch["src"], batch["path"]):
        src = data_cfg.sources[int(s)]
        name = source_name(src)
        issues: Counter = Counter()
        docs = read_source_file(src, Path(path), issues) if path else read_source(src, issues)
        first = int(unit) << _UNIT_SHIFT
        chunk: list[tuple[str, str, str]] = []
        for did, text in docs:
            chunk.append((did, text, name))
            if len(chunk) >= data_cfg.chunk_docs:
                yield _chunk_batch(first, chunk, issues, name, data_cfg.dedup.num_perm, data_cfg.dedup.near)
                issues.clear()
                first += len(chunk)
                chunk = []
        # the last chunk (possibly empty) carries the unit's remaining input problems
        yield _chunk_batch(first, chunk, issues, name, data_cfg.dedup.num_perm, data_cfg.dedup.near)


# ----------------------------------------------------------------------------
# Step 2: exact dedup


def _with_part(batch: dict[str, np.ndarray], parts: int) -> dict[str, np.ndarray]:
    return {**batch, "part": _part(batch["hash"], parts).astype(np.int64)}


def _mark_exact(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All documents of one partition: `dup` marks every document but the first (smallest key) of each hash."""
    order = np.lexsort((group["key"], group["hash"]))
    h = group["hash"][order]
    first = np.concatenate([[True], h[1:] != h[:-1]])
    dup = np.empty(len(order), dtype=bool)
    dup[order] = ~first
    return {**group, "dup": dup & (group["key"] >= 0)}  # counts rows (key -1) are no documents


def _summary(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per batch for the driver: chunk counts, exact duplicates (first three), kept docs per chunk."""
    stats = batch["key"] < 0
    dup = batch["dup"]
    kept = ~dup & ~stats
    d = np.flatnonzero(dup)
    first3 = d[np.argsort(batch["key"][d])[:3]]
    chunks, counts = np.unique(batch["chunk"][kept], return_counts=True)
    blob = {
        "stats": list(zip(batch["chunk"][stats].tolist(), batch["stats"][stats])),
        "n_dup": len(d),
        "examples": [(int(batch["key"][i]), str(batch["id"][i]), short_example(str(batch["text"][i]))) for i in first3],
        "chunks": chunks,
        "kept": counts,
        "kept_chars": sum(len(t) for t in batch["text"][kept]),
    }
    return {"blob": np.array([pickle.dumps(blob)], dtype=object)}


# ----------------------------------------------------------------------------
# Step 3: near dedup


def _band_rows(batch: dict[str, np.ndarray], bands: int, parts: int) -> dict[str, np.ndarray]:
    """One row per (kept document, band): the band hash is the LSH bucket."""
    keep = ~batch["dup"] & (batch["key"] >= 0)
    bh = band_hashes(batch["sig"][keep], bands).ravel()  # (n * bands,), document-major
    return {
        "band": np.tile(np.arange(bands, dtype=np.int64), int(keep.sum())),
        "bh": bh,
        "key": np.repeat(batch["key"][keep], bands),
        "part": _part(bh, parts).astype(np.int64),
    }


def _bucket_pairs(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Candidate pairs of every bucket in one partition, band by band (the local engine's `star_pairs`)."""
    firsts, members = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for band in np.unique(group["band"]):
        m = group["band"] == band
        a, b = star_pairs(group["bh"][m], group["key"][m])
        firsts.append(a)
        members.append(b)
    return {"a": np.concatenate(firsts), "b": np.concatenate(members)}


def _rows_with_keys(batch: dict[str, np.ndarray], keys: np.ndarray) -> dict[str, np.ndarray]:
    mask = np.isin(batch["key"], keys) & ~batch["dup"]
    return {c: batch[c][mask] for c in ("key", "sig", "text")}


# ----------------------------------------------------------------------------
# Step 4: split and write


def _survivors(batch: dict[str, np.ndarray], dup_keys: np.ndarray, parts: int) -> dict[str, np.ndarray]:
    keep = ~batch["dup"] & (batch["key"] >= 0) & ~np.isin(batch["key"], dup_keys)
    out = {c: batch[c][keep] for c in ("key", "chunk", "id", "text", "source")}
    out["cpart"] = _part(out["chunk"], parts).astype(np.int64)
    return out


def _place(group: dict[str, np.ndarray], plan: dict[str, np.ndarray], shard_docs: int) -> dict[str, np.ndarray]:
    """Whole chunks: each document's position among all survivors, its split, and its rows in the output shards.

    `plan` (from the driver): sorted chunk ids with each chunk's first survivor
    position and first train/validation row, and `copies` per survivor
    position (-1 = validation).
    """
    order = np.argsort(group["key"], kind="stable")
    g = {k: v[order] for k, v in group.items()}
    c = np.searchsorted(plan["chunk"], g["chunk"])  # chunk index; contiguous runs after sorting by key
    start = np.concatenate([[True], c[1:] != c[:-1]])
    run_first = np.flatnonzero(start)[np.cumsum(start) - 1]
    j = plan["offset"][c] + np.arange(len(c)) - run_first
    copies = plan["copies"][j].astype(np.int64)
    is_val = copies < 0
    n_train = np.maximum(copies, 0)
    # rows before this document inside its chunk, then the chunk's first row
    train_before = np.cumsum(n_train) - n_train
    val_before = np.cumsum(is_val) - is_val
    train_row = plan["train_row"][c] + train_before - train_before[run_first]
    val_row = plan["val_row"][c] + val_before - val_before[run_first]
    idx = np.concatenate([np.repeat(np.arange(len(c)), n_train), np.flatnonzero(is_val)])
    r = np.concatenate(
        [np.arange(n_train.sum()) - np.repeat(np.cumsum(n_train) - n_train, n_train), np.zeros(is_val.sum(), np.int64)]
    )
    val = np.concatenate([np.zeros(n_train.sum(), bool), np.ones(is_val.sum(), bool)])
    row = np.where(val, val_row[idx], train_row[idx] + r)
    ids = [d if k == 0 else f"{d}#{k}" for d, k in zip(g["id"][idx], r)]
    return {
        "wkey": (row // shard_docs) * 2 + val,  # one output shard per group: shard * 2 + (validation)
        "row": row,
        "r": r,
        "id": np.array(ids, dtype=object),
        "text": g["text"][idx],
        "source": g["source"][idx],
    }


def _write_shard(group: dict[str, np.ndarray], out: str) -> dict[str, np.ndarray]:
    """Write one shard `out/<split>/part-NNNNN.parquet`; return its counts for the report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    order = np.argsort(group["row"])
    wkey = int(group["wkey"][0])
    split = "validation" if wkey % 2 else "train"
    table = pa.table({c: pa.array(group[c][order].tolist(), type=pa.string()) for c in ("id", "text", "source")})
    pq.write_table(table, Path(out) / split / f"part-{wkey // 2:05d}.parquet", compression="zstd")
    lengths = np.array([len(t) for t in group["text"]], dtype=np.int64)
    return {
        "validation": np.array([wkey % 2 == 1]),
        "docs": np.array([len(lengths)]),
        "chars": np.array([lengths.sum()]),
        "hist": length_histogram(lengths[group["r"] == 0])[None, :],  # each kept document once
    }


# ----------------------------------------------------------------------------
# The driver


def _rows(ds: Any) -> dict[str, np.ndarray]:
    """A (small) dataset as one dict of arrays on the driver."""
    parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    parts = [p for p in parts if p and len(next(iter(p.values())))]
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _kolm_error(exc: BaseException) -> KolmError | None:
    """The KolmError a Ray task raised, if that is what failed (Ray wraps task errors)."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, KolmError):
            return e
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


class _Session:
    """Join or start Ray and set Ray Data's options for this run; restore them (and stop a Ray we started) after."""

    def __init__(self, address: str | None, num_cpus: int) -> None:
        self.address, self.num_cpus, self.started = address, num_cpus, False
        self.saved: tuple[Any, ...] = ()

    def __enter__(self) -> Any:
        import ray

        if not ray.is_initialized():
            if self.address is None:
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance needs no token
            ray.init(
                address=self.address,
                num_cpus=None if self.address else (self.num_cpus or None),
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
            self.started = True
        from ray.data.context import ShuffleStrategy

        ctx = ray.data.DataContext.get_current()
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # not even "progress bars disabled"
        self.saved = (ctx.enable_progress_bars, ctx.shuffle_strategy)
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # Shuffles as sort tasks: hash shuffles keep aggregator actors that hold CPUs between steps,
        # which on small clusters serializes the pipeline (7x slower on 2 cores for the test corpus).
        ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        return ray

    def __exit__(self, *exc: Any) -> None:
        import ray

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars, ctx.shuffle_strategy = self.saved
        if self.started:
            ray.shutdown()


def curate_ray(
    data_cfg: DataConfig,
    out: Path,
    seed: int = 0,
    log: Callable[[str], None] = print,
    task: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """`kolm.data.curate.curate` on Ray Data: the same documents, split and report as the local engine."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise KolmError("data.engine=ray needs Ray Data: pip install 'kolm[dist]' (or 'ray[data]')") from None
    units = read_units(data_cfg)  # on the driver: a missing path fails here, as one line
    with _Session(data_cfg.ray_address, data_cfg.num_proc) as ray:
        try:
            return _curate(ray, data_cfg, Path(out), seed, log, units)
        except Exception as exc:
            err = _kolm_error(exc)
            if err is not None and err is not exc:
                raise err from None
            raise


def _input_bytes(units: list[dict[str, Any]]) -> int:
    """Rough size of the input as text (gzip/bzip2 counted four times its size), to choose partitions."""
    total = 0
    for u in units:
        if u["path"]:
            size = os.path.getsize(u["path"])
            total += size * (4 if is_compressed(u["path"]) else 1)
    return total


def _curate(
    ray: Any, data_cfg: DataConfig, out: Path, seed: int, log: Callable[[str], None], units: list[dict[str, Any]]
) -> dict[str, Any]:
    d = data_cfg.dedup
    cpus = int(ray.cluster_resources().get("CPU", 1))
    token = f"{os.getpid()}-{time.time_ns()}"
    times: Counter = Counter()
    t_start = time.perf_counter()
    est_bytes = _input_bytes(units) * (1 + 4 * d.num_perm / 100)  # text plus signatures (~100 bytes per doc)
    parts = data_cfg.ray_partitions or max(cpus, math.ceil(est_bytes / _TARGET_GROUP_BYTES))

    # 1-2. read, normalize, filter, PII, MinHash; exact dedup by a groupby on the hash's partition
    docs = ray.data.from_items(units, override_num_blocks=max(1, len(units))).map_batches(
        _read_and_process, batch_size=1, batch_format="numpy", fn_args=(data_cfg, seed, token), num_cpus=1
    )
    docs = docs.map_batches(_with_part, batch_format="numpy", fn_args=(parts,))
    if d.exact:
        marked = docs.groupby("part", num_partitions=parts).map_groups(_mark_exact, batch_format="numpy")
    else:
        marked = docs.map_batches(lambda b: {**b, "dup": np.zeros(len(b["key"]), dtype=bool)}, batch_format="numpy")
    marked = marked.materialize()
    blobs = [pickle.loads(b) for b in _rows(marked.map_batches(_summary, batch_format="numpy")).get("blob", [])]
    stats = sorted((c, s) for b in blobs for c, s in b["stats"])
    tally, issues, per_source = Tally(), Counter(), Counter()
    chunk_source: dict[int, str] = {}
    for chunk, blob in stats:
        row = pickle.loads(blob)
        issues.update(row["issues"])
        chunk_source[chunk] = row["source"]
        if row["res"]:
            per_source[row["source"]] += row["res"]["n_docs"]
            tally.add(row["res"])
    t_pass1 = time.perf_counter() - t_start
    check_read(tally.docs_in, issues)
    chunk_ids = np.array(sorted(chunk_source), dtype=np.int64)
    kept_per_chunk = np.zeros(len(chunk_ids), dtype=np.int64)
    for b in blobs:
        np.add.at(kept_per_chunk, np.searchsorted(chunk_ids, b["chunks"]), b["kept"])
    examples = sorted(e for b in blobs for e in b["examples"])[:3]
    exact = {
        "docs_out": int(kept_per_chunk.sum()),
        "chars_out": sum(b["kept_chars"] for b in blobs),
        "removed": sum(b["n_dup"] for b in blobs),
        "examples": [{"id": i, "why": "same text as an earlier document", "text": t} for _, i, t in examples],
    }
    times["exact_dedup"] += time.perf_counter() - t_start - t_pass1
    log(
        f"read {tally.docs_in:,} documents; {tally.docs_after_filters:,} pass the filters; "
        f"{exact['docs_out']:,} after exact dedup"
    )

    # 3. near dedup: groupby on the band hash's partition; verify and join components on the driver
    t0 = time.perf_counter()
    dup_keys = np.zeros(0, dtype=np.int64)
    near = {"clusters": 0, "duplicates_removed": 0, "verified_pairs": 0, "examples": []}
    if d.near and exact["docs_out"]:
        band_parts = data_cfg.ray_partitions or max(
            cpus, math.ceil(exact["docs_out"] * d.bands * 40 / _TARGET_GROUP_BYTES)
        )
        pairs = _rows(
            marked.map_batches(_band_rows, batch_format="numpy", fn_args=(d.bands, band_parts))
            .groupby("part", num_partitions=band_parts)
            .map_groups(_bucket_pairs, batch_format="numpy")
        )
        if pairs and len(pairs["a"]):
            cand = np.unique(np.stack([pairs["a"], pairs["b"]], axis=1), axis=0)
            involved = np.unique(cand)
            got = _rows(marked.map_batches(_rows_with_keys, batch_format="numpy", fn_args=(involved,)))
            order = np.argsort(got["key"])  # rows in the order of `involved`
            sigs, texts = got["sig"][order], got["text"][order]
            ia, ib = np.searchsorted(involved, cand[:, 0]), np.searchsorted(involved, cand[:, 1])
            ok = verified(sigs[ia], sigs[ib], d.threshold)
            labels = components(ia[ok], ib[ok], len(involved))
            sizes = np.bincount(labels, minlength=len(involved))
            dup_keys = involved[labels != np.arange(len(involved))]
            shown = np.flatnonzero(sizes > 1)[: d.examples]
            near = {
                "clusters": int((sizes > 1).sum()),
                "duplicates_removed": len(dup_keys),
                "verified_pairs": int(ok.sum()),
                "examples": [[short_example(str(t)) for t in texts[labels == r][:3]] for r in shown],
            }
    times["near_dedup_lsh"] += time.perf_counter() - t0

    # 4-5. the split, planned on the driver per chunk; placed and written by the workers
    t0 = time.perf_counter()
    survivors_per_chunk = kept_per_chunk.copy()
    if len(dup_keys):
        np.add.at(survivors_per_chunk, np.searchsorted(chunk_ids, dup_keys, side="right") - 1, -1)
    n_keep = int(survivors_per_chunk.sum())
    is_val, draw = split_plan(n_keep, data_cfg.val_fraction, seed)
    weights = {source_name(s): s.weight for s in data_cfg.sources}
    weight_per_chunk = np.array([weights.get(chunk_source[int(c)], 1.0) for c in chunk_ids])
    copies = np.where(is_val, -1, train_copies(np.repeat(weight_per_chunk, survivors_per_chunk), draw))
    ends = np.cumsum(survivors_per_chunk)
    n_train_before = np.concatenate([[0], np.cumsum(np.maximum(copies, 0))])
    n_val_before = np.concatenate([[0], np.cumsum(is_val)])
    plan = {
        "chunk": chunk_ids,
        "offset": ends - survivors_per_chunk,
        "train_row": n_train_before[ends - survivors_per_chunk],
        "val_row": n_val_before[ends - survivors_per_chunk],
        "copies": copies.astype(np.int16),
    }
    split_docs = {"train": int(n_train_before[-1]), "validation": int(n_val_before[-1])}
    check_kept(split_docs["train"])
    for name in ("train", "validation"):
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).mkdir(parents=True)
    written = _rows(
        marked.map_batches(_survivors, batch_format="numpy", fn_args=(dup_keys, parts))
        .groupby("cpart", num_partitions=parts)
        .map_groups(_place, batch_format="numpy", fn_args=(plan, data_cfg.shard_docs))
        .groupby("wkey", num_partitions=max(1, min(parts, math.ceil(sum(split_docs.values()) / data_cfg.shard_docs))))
        .map_groups(_write_shard, batch_format="numpy", fn_args=(str(out),))
    )
    for name, n in split_docs.items():
        if n == 0:
            ShardWriter(out / name).close()  # an empty split is one empty shard, as in the local engine
    val = written["validation"]
    split = {
        "train_docs": int(written["docs"][~val].sum()),
        "train_chars": int(written["chars"][~val].sum()),
        "validation_docs": int(written["docs"][val].sum()),
        "validation_chars": int(written["chars"][val].sum()),
    }
    hist_out = written["hist"].sum(axis=0)
    times["split_write"] += time.perf_counter() - t0
    tally.times.update(times)
    return build_report(
        data_cfg,
        seed,
        tally,
        per_source,
        issues,
        exact=exact,
        near=near,
        split=split,
        hist_out=np.asarray(hist_out, dtype=np.int64),
        timing={
            "engine": "ray",
            "num_proc": cpus,
            "wall_s": round(time.perf_counter() - t_start, 2),
            "pass1_wall_s": round(t_pass1, 2),
            "cpu_s": dict(tally.times),
        },
    )
