"""Reading and writing the curated dataset: Parquet shards `data/<split>/part-NNNNN.parquet`.

Columns: id (str), text (str, NFC), source (str). `read_split` is what the
pretraining stage uses to stream the texts back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from kolm.errors import DataError

__all__ = ["ShardWriter", "read_split", "split_files"]


class ShardWriter:
    """Writes rows to numbered Parquet shards of at most `shard_docs` rows each."""

    def __init__(self, folder: Path, shard_docs: int = 100_000) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("part-*.parquet"):  # a re-run must not leave stale shards behind
            old.unlink()
        self.shard_docs = shard_docs
        self.rows: dict[str, list[str]] = {"id": [], "text": [], "source": []}
        self.n_shards = 0
        self.n_docs = 0
        self.n_chars = 0

    def add(self, doc_id: str, text: str, source: str) -> None:
        """Queue one document; a full shard is flushed to disk."""
        self.rows["id"].append(doc_id)
        self.rows["text"].append(text)
        self.rows["source"].append(source)
        self.n_docs += 1
        self.n_chars += len(text)
        if len(self.rows["id"]) >= self.shard_docs:
            self.flush()

    def flush(self) -> None:
        """Write queued rows as the next shard (an empty split still gets one empty shard at close)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v, type=pa.string()) for k, v in self.rows.items()})
        pq.write_table(table, self.folder / f"part-{self.n_shards:05d}.parquet", compression="zstd")
        self.n_shards += 1
        self.rows = {"id": [], "text": [], "source": []}

    def close(self) -> None:
        """Flush the remainder."""
        if self.rows["id"] or self.n_shards == 0:
            self.flush()


def split_files(data_dir: str | Path, split: str) -> list[Path]:
    """Shards of a split, in order; DataError when there are none."""
    folder = Path(data_dir) / split
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise DataError(f"no {split} split at {folder}; run `kolm data` first")
    return files


def read_split(data_dir: str | Path, split: str = "train", field: str = "text") -> Iterator[str]:
    """Texts of a curated split, streamed shard by shard (bounded memory)."""
    import pyarrow.parquet as pq

    for f in split_files(data_dir, split):
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=8192, columns=[field]):
            for text in batch.column(0).to_pylist():
                if text:
                    yield text
