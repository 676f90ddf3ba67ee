"""Inference state passed explicitly into a model's forward: a preallocated key/value cache, or a recurrent state.

The generation engine (`kolm.infer.engine`) owns the state object and hands it
to `model(..., cache=state)` at every step; the model writes into it. The
contract every state object meets is small, so other architectures bring
their own (`RecurrentState` for Mamba-2 and RWKV-7 keeps fixed-size tensors
per layer instead of growing keys and values):

* `get_seq_length()` -> tokens already seen (same for every row: batches are
  left-padded so rows stay aligned);
* `update(key, value, layer_idx)` -> keys/values of all positions so far
  (attention layers); a recurrent layer reads and writes its own tensors
  through `RecurrentState.get(name, layer_idx)` instead;
* `reset()` and `select(rows)` for the engine.

`update` has the signature of Hugging Face's `Cache.update`, so the same
attention code also runs inside `transformers`' `generate()` with its
`DynamicCache`. `ColumnWriter` is the fixed-shape view of a `KVCache` that a
compiled decode step writes through.

What a layer caches need not be a key and a value of one size: Multi-head
Latent Attention (`kolm.models.mla`) caches its compressed latent as the
"key" and its rotary key as the "value", so `KVCache` takes a separate
`value_dim`.
"""

from __future__ import annotations

import torch

__all__ = ["KVCache", "ColumnWriter", "RecurrentState"]


class KVCache:
    """Keys and values of every layer in buffers sized for the whole generation.

    Buffers are (n_layers, B, KV, max_len, D) (values: D_v = `value_dim`, by default D); `update` copies the new step in
    place and returns views up to the current length, so decoding never
    reallocates or concatenates.
    """

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        value_dim: int | None = None,
    ):
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape[:-1] + (value_dim or head_dim,), device=device, dtype=dtype)
        self.max_len = max_len
        self.lengths = [0] * n_layers  # per layer, so a layer can be written before the next reads its length
        self._views()

    def _views(self) -> None:
        # Per-layer views made once: indexing the 5-D buffers every step costs more than the copy itself.
        self._k, self._v = list(self.k.unbind(0)), list(self.v.unbind(0))

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens already cached (before the current forward has written its layer)."""
        return self.lengths[layer_idx]

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Append key/value (B, KV, T, D) of one layer; return all keys/values so far (B, KV, len, D)."""
        start = self.lengths[layer_idx]
        end = start + key.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; cannot write up to {end}")
        k, v = self._k[layer_idx], self._v[layer_idx]  # (B, KV, max_len, D)
        k[:, :, start:end].copy_(key)
        v[:, :, start:end].copy_(value)
        self.lengths[layer_idx] = end
        return k[:, :, :end], v[:, :, :end]

    def reset(self) -> None:
        """Forget every position (buffers are reused, not cleared)."""
        self.lengths = [0] * len(self.lengths)

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. drop finished sequences)."""
        self.k = self.k[:, rows].contiguous()
        self.v = self.v[:, rows].contiguous()
        self._views()


class ColumnWriter:
    """A fixed-shape view of a `KVCache` for one decode step: writes column `column`, returns whole buffers.

    Every shape stays the same from step to step (the step's position is a
    tensor, not a Python int), so a compiled decode step (`KolmGPTForCausalLM.
    decode_step`) is traced once; attention hides the columns not yet written
    with its mask. The cache's `lengths` are left as they were.
    """

    def __init__(self, cache: KVCache, column: torch.Tensor):
        self.cache, self.column = cache, column.view(1)  # (1,) long

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write key/value (B, KV, 1, D) at the column; return the layer's buffers (B, KV, max_len, D)."""
        k, v = self.cache._k[layer_idx], self.cache._v[layer_idx]
        k.index_copy_(2, self.column, key)
        v.index_copy_(2, self.column, value)
        return k, v


class RecurrentState:
    """Fixed-size per-row state of a recurrent model (Mamba-2, RWKV-7): named tensors per layer, any number of rows.

    `shapes` maps a state name to its per-row shape, e.g. Mamba-2's
    {"conv": (conv_dim, kernel - 1), "ssm": (heads, head_dim, state_size)};
    each becomes a buffer (n_layers, capacity, *shape), zero to begin with
    (a zero state is the start of every sequence). `dtypes` may give a name
    its own dtype (the scan state stays fp32 under bf16 weights).

    Unlike keys and values, nothing here grows with the sequence: the model
    reads `get(name, layer)` (rows 0..rows-1) and writes the new state back
    into it in place. The same object is the engine's cache (`rows` =
    capacity) and the continuous-batching slot state (rows join with
    `insert` and leave with `remove`; `begin_step`/`end_step` keep each row's
    length for the position ids the scheduler hands in, which the model
    ignores).
    """

    def __init__(
        self,
        n_layers: int,
        capacity: int,
        shapes: dict[str, tuple[int, ...]],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        dtypes: dict[str, torch.dtype] | None = None,
        rows: int | None = None,
    ):
        dtypes = dtypes or {}
        self.buffers = {
            name: torch.zeros((n_layers, capacity, *shape), device=device, dtype=dtypes.get(name, dtype))
            for name, shape in shapes.items()
        }
        self.capacity = capacity
        self.device = torch.device(device)
        self.rows = capacity if rows is None else rows
        self.lengths: list[int] = [0] * self.rows

    @property
    def batch_size(self) -> int:
        return self.rows

    def get(self, name: str, layer_idx: int) -> torch.Tensor:
        """The `name` state of one layer for the active rows: a view (rows, *shape) to read and write in place."""
        return self.buffers[name][layer_idx, : self.rows]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens the longest row has seen."""
        return max(self.lengths, default=0)

    def advance(self, n: int) -> None:
        """Every row has seen `n` more tokens (called by the model after a forward that wrote the state)."""
        self.lengths = [length + n for length in self.lengths]

    def reset(self) -> None:
        """Back to the start of every sequence."""
        for buf in self.buffers.values():
            buf.zero_()
        self.lengths = [0] * self.rows

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. drop finished sequences)."""
        keep = rows.tolist()
        for name, buf in self.buffers.items():
            self.buffers[name] = buf[:, rows].contiguous()
        self.lengths = [self.lengths[i] for i in keep]
        self.rows = self.capacity = len(keep)

    # -- continuous batching (kolm.infer.slots.SlotState) --------------------------

    def insert(self, state: RecurrentState) -> int:
        """Copy the one-row state of a prefilled sequence into the next free row; return that row."""
        if self.rows >= self.capacity:
            raise RuntimeError(f"all {self.capacity} slots are in use")
        row = self.rows
        for name, buf in self.buffers.items():
            buf[:, row].copy_(state.buffers[name][:, 0])
        self.rows += 1
        self.lengths.append(state.lengths[0])
        return row

    def remove(self, row: int) -> None:
        """Free `row`; the last row moves into it."""
        last = self.rows - 1
        if row != last:
            for buf in self.buffers.values():
                buf[:, row].copy_(buf[:, last])
            self.lengths[row] = self.lengths[last]
        self.lengths.pop()
        self.rows -= 1

    def begin_step(self) -> tuple[torch.Tensor, None]:
        """Position ids (rows, 1) of a one-token step; no padding mask (the state has no padding)."""
        if self.rows == 0:
            raise RuntimeError("no active rows")
        return torch.tensor(self.lengths, device=self.device)[:, None], None

    def end_step(self) -> None:
        """Nothing to do: the model's forward already counted the step (`advance`)."""
