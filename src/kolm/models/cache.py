"""Inference state passed explicitly into a model's forward: a preallocated key/value cache.

The generation engine (`kolm.infer.engine`) owns the state object and hands it
to `model(..., cache=state)` at every step; the model writes into it. The
contract every state object meets is small, so other architectures can bring
their own (a recurrent state for Mamba/RWKV keeps a fixed-size tensor per
layer instead of growing keys and values):

* `get_seq_length()` -> tokens already seen (same for every row: batches are
  left-padded so rows stay aligned);
* `update(key, value, layer_idx)` -> keys/values of all positions so far
  (attention layers); a recurrent layer would read/write its own slot instead;
* `reset()` and `select(rows)` for the engine.

`update` has the signature of Hugging Face's `Cache.update`, so the same
attention code also runs inside `transformers`' `generate()` with its
`DynamicCache`.

What a layer caches need not be a key and a value of one size: Multi-head
Latent Attention (`kolm.models.mla`) caches its compressed latent as the
"key" and its rotary key as the "value", so `KVCache` takes a separate
`value_dim`.
"""

from __future__ import annotations

import torch

__all__ = ["KVCache"]


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
