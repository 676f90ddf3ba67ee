"""Inference state of a running batch whose rows come and go: one slot per sequence, each with its own length.

Continuous batching (`kolm.infer.batch`) prefills every new request on its own
(`model.new_cache(1, prompt_len)`, exactly what single-prompt generation does)
and then moves that state into a row of the batch state here. Rows join and
leave between decode steps, so they have different lengths: row i has seen
`lengths[i]` tokens, and its next token goes to position `lengths[i]`.

`SlotKVCache` keeps keys and values right-aligned at position 0 of each row
("ragged right"): a decode step writes row i's new key at column `lengths[i]`
and attention reads columns [0, max(lengths) + 1) of every row, with a padding
mask hiding each row's unused tail. Active rows are always 0..rows-1: a
retired row is filled by moving the last row into it, so the keys the model
reads are a view of the buffers, never a gathered copy.

The model's forward sees the ordinary cache contract (`get_seq_length()`,
`update(key, value, layer_idx)`) plus an explicit 2-D `attention_mask` and
`position_ids` from `begin_step()`, so KolmGPT needs no special code path.
Another architecture brings its own slot state through
`model.new_slot_state(slots, max_len, device, dtype)` (a recurrent model keeps
one fixed-size state per row and ignores lengths); the scheduler only calls
`insert`, `remove`, `begin_step` and `end_step`.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from kolm.errors import KolmError
from kolm.models.cache import KVCache

__all__ = ["SlotState", "SlotKVCache", "slot_state_for"]


class SlotState(Protocol):
    """What the continuous-batching scheduler needs from a batch state (besides what the model's layers call)."""

    rows: int
    lengths: list[int]

    def insert(self, state: Any) -> int: ...  # state of one prefilled sequence -> its row

    def remove(self, row: int) -> None: ...  # the last row moves into `row`

    def begin_step(self) -> tuple[torch.Tensor, torch.Tensor | None]: ...  # (position_ids, attention_mask)

    def end_step(self) -> None: ...


class SlotKVCache:
    """Key/value buffers (n_layers, slots, KV, max_len, D or D_v) with a length per row; see the module docstring."""

    def __init__(
        self,
        n_layers: int,
        slots: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        value_dim: int | None = None,
    ):
        shape = (n_layers, slots, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape[:-1] + (value_dim or head_dim,), device=device, dtype=dtype)
        self._k, self._v = list(self.k.unbind(0)), list(self.v.unbind(0))  # per-layer views (slots, KV, max_len, D)
        self.slots, self.max_len = slots, max_len
        self.device = self.k.device
        self.rows = 0
        self.lengths: list[int] = []
        self._width = 0  # columns attention reads in the current step: max(lengths) + 1
        self._row_idx: torch.Tensor | None = None
        self._pos_idx: torch.Tensor | None = None

    @classmethod
    def like(cls, state: KVCache, slots: int, max_len: int) -> SlotKVCache:
        """A slot cache with the layer/head shapes, device and dtype of a prefill `KVCache`."""
        n_layers, _, kv, _, d = state.k.shape
        return cls(n_layers, slots, kv, d, max_len, state.k.device, state.k.dtype, value_dim=state.v.shape[-1])

    # -- rows joining and leaving (between steps) --------------------------------

    def insert(self, state: KVCache) -> int:
        """Copy a one-row prefill cache into the next free row; return that row."""
        if self.rows >= self.slots:
            raise RuntimeError(f"all {self.slots} slots are in use")
        n = state.get_seq_length()
        if n >= self.max_len:
            raise RuntimeError(f"a sequence of {n} tokens leaves no room in slots of {self.max_len}")
        row = self.rows
        self.k[:, row, :, :n].copy_(state.k[:, 0, :, :n])  # (L, KV, n, D)
        self.v[:, row, :, :n].copy_(state.v[:, 0, :, :n])
        self.lengths.append(n)
        self.rows += 1
        return row

    def remove(self, row: int) -> None:
        """Free `row`; the last row moves into it (callers mirror the move in their own row list)."""
        last = self.rows - 1
        if row != last:
            n = self.lengths[last]
            self.k[:, row, :, :n].copy_(self.k[:, last, :, :n])
            self.v[:, row, :, :n].copy_(self.v[:, last, :, :n])
            self.lengths[row] = n
        self.lengths.pop()
        self.rows -= 1

    # -- one decode step ----------------------------------------------------------

    def begin_step(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Position ids (B, 1) and padding mask (B, width) for a one-token step of every row (mask None if aligned)."""
        if self.rows == 0:
            raise RuntimeError("no active rows")
        width = max(self.lengths) + 1
        if width > self.max_len:
            raise RuntimeError(f"a row would exceed the slot length {self.max_len}")
        self._width = width
        pos = torch.tensor(self.lengths, device=self.device)  # (B,)
        self._row_idx = torch.arange(self.rows, device=self.device)
        self._pos_idx = pos
        if min(self.lengths) == width - 1:
            return pos[:, None], None  # every row is as long as the longest: plain attention over all columns
        mask = (torch.arange(width, device=self.device)[None, :] <= pos[:, None]).long()  # (B, width)
        return pos[:, None], mask

    def end_step(self) -> None:
        """Every row gained one token."""
        self.lengths = [n + 1 for n in self.lengths]

    # -- the cache contract the model's attention layers call ---------------------

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Columns before the new token (the model builds its causal mask from it)."""
        return self._width - 1

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write each row's new key/value (B, KV, 1, D) at its own length; return (B, KV, width, D) views."""
        if key.shape[2] != 1:
            raise RuntimeError("a slot cache takes one token per row and step; prefill into a KVCache")
        k, v = self._k[layer_idx], self._v[layer_idx]  # (slots, KV, max_len, D)
        k[self._row_idx, :, self._pos_idx] = key[:, :, 0]  # (B, KV, D) scattered to (row, :, length)
        v[self._row_idx, :, self._pos_idx] = value[:, :, 0]
        return k[: self.rows, :, : self._width], v[: self.rows, :, : self._width]


def slot_state_for(model: Any, prefill_state: Any, slots: int, max_len: int) -> SlotState:
    """The batch state for `model`: its own `new_slot_state`, else a `SlotKVCache` shaped like its KV cache."""
    if hasattr(model, "new_slot_state"):
        p = next(model.parameters())
        return model.new_slot_state(slots, max_len, p.device, p.dtype)
    if isinstance(prefill_state, KVCache):
        return SlotKVCache.like(prefill_state, slots, max_len)
    raise KolmError(
        f"{type(model).__name__} has no slot state for continuous batching "
        "(give it new_slot_state(slots, max_len, device, dtype))"
    )
