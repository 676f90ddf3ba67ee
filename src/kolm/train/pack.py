"""Pack a text split into token shards on disk, and read fixed-length windows back.

Each split becomes `packed/<split>-00000.bin ...`: raw uint16 token ids (uint32
when the vocabulary needs it), documents joined with the EOS id so the model
learns where texts end, plus `packed/index.json` recording the dtype, shard
sizes, document / character counts (for bits per character) and a fingerprint
of the tokenizer and the data. Packing again with the same fingerprint is a
no-op. Training reads windows of `seq_len + 1` tokens through `np.memmap`, so
the corpus never has to fit in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from kolm.errors import DataError

__all__ = ["pack_split", "pack_splits", "read_index", "PackedTokens", "WindowSampler"]

INDEX = "index.json"
_BATCH_DOCS = 2048


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def read_index(pack_dir: str | Path) -> dict[str, Any] | None:
    """The packing index of a folder, or None when absent/unreadable."""
    try:
        return json.loads((Path(pack_dir) / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pack_split(
    texts: Iterable[str],
    tokenizer: Any,
    out_dir: str | Path,
    split: str,
    eos_id: int,
    shard_tokens: int = 50_000_000,
    progress: Any = None,
) -> dict[str, Any]:
    """Tokenize `texts` (in batches; the Rust tokenizer uses all its threads) into `<split>-NNNNN.bin` shards.

    `tokenizer` is a `tokenizers.Tokenizer` (fast, parallel `encode_batch`) or
    anything with `__call__(list[str]) -> {"input_ids": ...}`. Returns the
    split's index entry.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer.get_vocab_size() if hasattr(tokenizer, "get_vocab_size") else len(tokenizer)
    dtype = _dtype_for(vocab)
    shards: list[dict[str, Any]] = []
    buf: list[np.ndarray] = []
    buf_len = 0
    n_docs = n_chars = n_tokens = 0

    def flush() -> None:
        nonlocal buf, buf_len
        if not buf_len:
            return
        name = f"{split}-{len(shards):05d}.bin"
        arr = np.concatenate(buf).astype(dtype, copy=False)
        tmp = out_dir / (name + ".tmp")
        arr.tofile(tmp)
        os.replace(tmp, out_dir / name)
        shards.append({"file": name, "tokens": int(arr.size)})
        buf, buf_len = [], 0

    def encode(batch: list[str]) -> list[list[int]]:
        if hasattr(tokenizer, "encode_batch"):
            return [e.ids for e in tokenizer.encode_batch(batch, add_special_tokens=False)]
        return tokenizer(batch, add_special_tokens=False)["input_ids"]

    batch: list[str] = []

    def consume(batch: list[str]) -> None:
        nonlocal buf_len, n_docs, n_chars, n_tokens
        for ids in encode(batch):
            arr = np.asarray(ids + [eos_id], dtype=np.int64)
            buf.append(arr)
            buf_len += arr.size
            n_tokens += arr.size
        n_docs += len(batch)
        n_chars += sum(len(t) + 1 for t in batch)  # +1: the separator stands for one character
        if progress is not None:
            progress.advance(len(batch))
        if buf_len >= shard_tokens:
            flush()

    for text in texts:
        if text:
            batch.append(text)
        if len(batch) >= _BATCH_DOCS:
            consume(batch)
            batch = []
    if batch:
        consume(batch)
    flush()
    if n_tokens == 0:
        raise DataError(f"the {split} split is empty: nothing to pack (check the data stage output)")
    return {"shards": shards, "docs": n_docs, "chars": n_chars, "tokens": n_tokens}


def pack_splits(
    split_texts: dict[str, Any],
    tokenizer: Any,
    out_dir: str | Path,
    eos_id: int,
    fingerprint: str,
    shard_tokens: int = 50_000_000,
    progress: Any = None,
) -> tuple[dict[str, Any], bool]:
    """Pack several splits (`{"train": callable_or_iterable, ...}`); skip when `fingerprint` matches.

    Values may be zero-argument callables returning an iterator, so nothing is
    read when the packing is up to date. Returns (index, packed_now).
    """
    out_dir = Path(out_dir)
    index = read_index(out_dir)
    if (
        index
        and index.get("fingerprint") == fingerprint
        and all((out_dir / s["file"]).is_file() for sp in index["splits"].values() for s in sp["shards"])
    ):
        return index, False
    for old in out_dir.glob("*.bin"):
        old.unlink()
    vocab = tokenizer.get_vocab_size() if hasattr(tokenizer, "get_vocab_size") else len(tokenizer)
    index = {
        "fingerprint": fingerprint,
        "dtype": _dtype_for(vocab).name,
        "vocab_size": vocab,
        "eos_id": eos_id,
        "splits": {},
    }
    for split, texts in split_texts.items():
        it = texts() if callable(texts) else texts
        index["splits"][split] = pack_split(it, tokenizer, out_dir, split, eos_id, shard_tokens, progress)
    tmp = out_dir / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, out_dir / INDEX)
    return index, True


class PackedTokens:
    """Fixed-length windows over one packed split: window i is tokens [i*T, i*T + T + 1)."""

    def __init__(self, pack_dir: str | Path, split: str, seq_len: int) -> None:
        pack_dir = Path(pack_dir)
        index = read_index(pack_dir)
        if index is None or split not in index.get("splits", {}):
            raise DataError(f"no packed {split!r} split in {pack_dir}; run `kolm pretrain` to pack the data")
        info = index["splits"][split]
        self.seq_len = seq_len
        self.chars_per_token = info["chars"] / max(1, info["tokens"])
        self._shards = [np.memmap(pack_dir / s["file"], dtype=index["dtype"], mode="r") for s in info["shards"]]
        # Windows never straddle shards; each shard loses at most one partial window.
        counts = [max(0, (len(s) - 1) // seq_len) for s in self._shards]
        self._starts = np.cumsum([0] + counts)
        self.n_windows = int(self._starts[-1])
        if self.n_windows == 0:
            raise DataError(
                f"the packed {split} split has {info['tokens']} tokens, fewer than one window of "
                f"{seq_len + 1}; lower pretrain.seq_len or add data"
            )

    def __len__(self) -> int:
        return self.n_windows

    def window(self, i: int) -> np.ndarray:
        """Tokens of window `i` as int64, shape (seq_len + 1,)."""
        shard = int(np.searchsorted(self._starts, i, side="right") - 1)
        off = (i - int(self._starts[shard])) * self.seq_len
        return np.asarray(self._shards[shard][off : off + self.seq_len + 1], dtype=np.int64)

    def batch(self, indices: Iterable[int]):
        """`{"input_ids", "labels"}` tensors of shape (B, T) for the given windows (labels pre-shift by the model)."""
        import torch

        x = torch.from_numpy(np.stack([self.window(int(i)) for i in indices]))  # (B, T+1)
        # HF causal LMs shift labels internally, so inputs and labels are the same T tokens.
        ids = x[:, :-1].contiguous()
        return {"input_ids": ids, "labels": ids.clone()}


@dataclass
class WindowSampler:
    """Shuffled, resumable, rank-sharded batches of windows.

    Each global micro-batch takes `batch_size * world_size` window indices from
    a per-epoch permutation (seeded by `seed + epoch`); rank r uses its slice.
    So one process with batch 2B sees exactly the windows that two processes
    with batch B see together, and `state_dict()` (epoch, position) resumes it.
    """

    data: PackedTokens
    batch_size: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    epoch: int = 0
    pos: int = 0

    def __post_init__(self) -> None:
        self._perm: np.ndarray | None = None
        self._perm_epoch = -1

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            self._perm = np.random.default_rng(self.seed + self.epoch).permutation(len(self.data))
            self._perm_epoch = self.epoch
        return self._perm  # type: ignore[return-value]

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        global_bs = self.batch_size * self.world_size
        if global_bs > len(self.data):
            raise DataError(
                f"one batch needs {global_bs} windows but the data has {len(self.data)}; "
                "lower pretrain.batch_size or seq_len, or add data"
            )
        if self.pos + global_bs > len(self.data):  # drop the ragged end of the epoch
            self.epoch, self.pos = self.epoch + 1, 0
        idx = self._permutation()[self.pos : self.pos + global_bs]
        self.pos += global_bs
        return self.data.batch(idx[self.rank * self.batch_size : (self.rank + 1) * self.batch_size])

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
