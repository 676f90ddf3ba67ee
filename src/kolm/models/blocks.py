"""Building blocks of kolm's decoder-only Transformer, in the order a token meets them.

RMSNorm -> rotary position embedding -> causal self-attention (grouped-query,
`scaled_dot_product_attention`) -> SwiGLU MLP -> pre-norm residual block.

Design choices worth knowing:

* Composition: a `Block` is handed its token mixer (attention here; an SSM or
  MLA later) and its MLP (SwiGLU here; a mixture of experts later) by the
  model that builds it, and only adds the norms and the residual stream.
* Module names follow Llama (`q_proj k_proj v_proj o_proj gate_proj up_proj
  down_proj`), so PEFT finds its targets and `export --format hf-llama` is a
  rename-free copy of the state dict.
* While the projections are plain `nn.Linear`, attention runs ONE matmul for
  q, k and v (their weights concatenated) and the MLP one matmul for gate and
  up. When PEFT swaps a projection for its own module (LoRA, IA3, DoRA...) the
  block notices and calls each module, so adapters always take effect.
  Concatenating weights costs a copy per forward, small next to the matmul
  when training; at inference (no autograd) the fused weight is cached and
  rebuilt only when a weight changes.
* Rotary embedding uses the half-split ("rotate_half") layout of Hugging Face
  Llama, applied to q and k in one op, with cos/sin tables built once per
  device/dtype instead of per forward.
* No biases anywhere; attention never loops over heads; GQA is handled by
  SDPA's `enable_gqa` (no `repeat_interleave` copies of k and v). Training
  in bf16 on a CPU takes `causal_attention_bmm` instead: SDPA's CPU flash
  kernel is fast forward but its bf16 backward measured ~2.5x slower than
  plain batched matmuls at the sequence lengths kolm trains on; compiled fp32
  training on a CPU takes it too (the softmax and mask fuse there).
* Inference state is an explicit cache object handed to `forward`
  (see `kolm.models.cache`); anything with `update(k, v, layer_idx)` and
  `get_seq_length()` works, including Hugging Face's `DynamicCache`.
* The projections that write into the residual stream (`o_proj`,
  `down_proj`) carry `_kolm_residual_out = True`; the model's weight init
  scales them down with depth.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from kolm.errors import ConfigError
from kolm.models.int8_weights import Int8Linear, int8_matmul

__all__ = [
    "RMSNorm",
    "Rotary",
    "apply_rotary",
    "causal_attention_bmm",
    "Attention",
    "SwiGLU",
    "Block",
    "SequenceTooLongError",
]


class SequenceTooLongError(ConfigError, ValueError):
    """A sequence longer than the model's rotary table (`max_seq_len`)."""


# ----------------------------------------------------------------------------
# Normalisation


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain; computed in float32 like Llama."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one fused op
        # Upcast so bf16 activations are normalised in fp32, then scale in the input dtype (HF Llama numerics).
        y = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return self.weight * y


# ----------------------------------------------------------------------------
# Rotary position embedding


class Rotary(nn.Module):
    """cos/sin tables of rotary position embedding, half-split layout.

    The tables are plain attributes built lazily on the device and dtype of the
    activations: they never appear in the state dict and need no special care
    when the model is materialised from the meta device.
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim, self.max_positions, self.theta = head_dim, max_positions, theta
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _build(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = 1.0 / (
            self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim)
        )
        t = torch.arange(self.max_positions, device=device, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # (P, D/2)
        cos = torch.cat([freqs.cos(), freqs.cos()], dim=-1)  # (P, D)
        sin = freqs.sin()
        # Sign folded in so that rotate_half(x) * sin == roll(x, D/2) * sin_signed (one op fewer per call).
        sin_signed = torch.cat([-sin, sin], dim=-1)  # (P, D)
        return cos.to(dtype), sin_signed.to(dtype)

    def tables(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole (cos, sin_signed) tables (P, D) on `device` in `dtype`, built on first use."""
        if torch.compiler.is_compiling():
            # Built inside the compiled graph (constant-folded there): a lookup in the cache dict would make
            # the graph depend on whether the key was present, and recompile once it is.
            return self._build(device, dtype)
        key = (device, dtype)
        if key not in self._tables:
            # Normal tensors even when first called under torch.inference_mode(): later training may need them.
            with torch.inference_mode(False), torch.no_grad():
                self._tables[key] = self._build(device, dtype)
        return self._tables[key]

    def forward(
        self, x: torch.Tensor, start: int, length: int, position_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) shaped to broadcast over (B, T, heads, D): (1 or B, T, 1, D)."""
        end = start + length if position_ids is None else None
        if end is not None and end > self.max_positions:
            raise SequenceTooLongError(
                f"sequence length {end} exceeds the model's max positions {self.max_positions}; "
                f"shorten the input or raise model.max_seq_len (it sets the rotary table size)"
            )
        cos, sin = self.tables(x.device, x.dtype)
        if position_ids is None:
            return cos[start:end, None, :].unsqueeze(0), sin[start:end, None, :].unsqueeze(0)
        if int(position_ids.max()) >= self.max_positions:
            raise SequenceTooLongError(
                f"position {int(position_ids.max())} exceeds the model's max positions {self.max_positions}; "
                f"shorten the input or raise model.max_seq_len"
            )
        return cos[position_ids].unsqueeze(2), sin[position_ids].unsqueeze(2)  # (B, T, 1, D)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) of the last dim by position-dependent angles. x: (B, T, heads, D)."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


# ----------------------------------------------------------------------------
# Attention


def _plain_linear(*modules: nn.Module) -> bool:
    # Exact type and no hooks: a PEFT wrapper, a subclass or a hooked layer must run its own forward.
    return all(type(m) is nn.Linear and not m._forward_hooks and not m._forward_pre_hooks for m in modules)


_REUSE = threading.local()  # set by reuse_fused_weights() for the duration of one generation


@contextlib.contextmanager
def reuse_fused_weights(model: nn.Module) -> Iterator[None]:
    """Reuse the concatenated q/k/v and gate/up weights across the forward passes of one generation.

    Outside this scope every forward concatenates afresh. The cache cannot be
    trusted across weight updates: fused AdamW and FSDP2 write parameters in
    place without bumping their version counter, so a cached copy would go stale.
    """
    for module in model.modules():
        fused = getattr(module, "_fused", None)
        if isinstance(fused, _FusedWeight):
            fused.clear()
    previous = getattr(_REUSE, "on", False)
    _REUSE.on = True
    try:
        yield
    finally:
        _REUSE.on = previous


class _FusedWeight:
    """Concatenations of several layers' weights (one per slot); cached only inside `reuse_fused_weights`.

    Frozen slots (int8 buffers of an inference model, which nothing updates)
    are kept across generations, so a compiled decode step keeps reading the
    same tensor and is not retraced.
    """

    def __init__(self) -> None:
        self._frozen: dict[str, tuple[tuple, torch.Tensor]] = {}
        self.clear()

    def clear(self) -> None:
        self._cached: dict[str, tuple[tuple, torch.Tensor]] = {}

    def __call__(self, ws: list[torch.Tensor], slot: str = "weight", frozen: bool = False) -> torch.Tensor:
        """torch.cat(ws) along rows; `frozen`: the tensors never change, so the concatenation is always kept and a
        traced step reads the kept copy (made by an eager call such as the prefill) instead of concatenating."""
        if torch.compiler.is_compiling():
            # Only the frozen store is read while tracing: reading the other would guard the graph on its contents.
            kept = self._frozen.get(slot) if frozen else None
            if kept is not None:
                return kept[1]
            return torch.cat(ws, dim=0)  # traced: fused into a compiled training step, a constant in a frozen one
        store = self._frozen if frozen else self._cached
        cached = store.get(slot)
        if not (frozen or getattr(_REUSE, "on", False)) or (
            torch.is_grad_enabled() and any(w.requires_grad for w in ws)
        ):
            return torch.cat(ws, dim=0)  # differentiable; gradients split back per weight
        key = tuple((w.data_ptr(), w._version) for w in ws)  # a move or cast changes data_ptr
        if cached is None or cached[0] != key:
            with torch.inference_mode(False):
                cached = store[slot] = (key, torch.cat([w.detach() for w in ws], dim=0))
        return cached[1]


def _fused_projection(fused: _FusedWeight, x: torch.Tensor, *layers: nn.Module) -> torch.Tensor | None:
    """x through `layers` as one matmul on their stacked weights: (..., sum of out features), or None.

    None when the layers cannot be stacked (a PEFT wrapper, a hooked or
    mixed layer): the caller then runs them one by one.
    """
    if _plain_linear(*layers):
        return F.linear(x, fused([m.weight for m in layers]))
    if all(type(m) is Int8Linear and not m._forward_hooks and not m._forward_pre_hooks for m in layers):
        qweight = fused([m.qweight for m in layers], "qweight", frozen=True)
        return int8_matmul(x, qweight, fused([m.scales for m in layers], "scales", frozen=True))
    return None


def _explicit_attention(q: torch.Tensor) -> bool:
    # CPU training at T=128 (2 cores, AMX), measured with benchmarks/bench_train.py: in bf16 the flash kernel's
    # backward is ~2.5x slower than three batched matmuls and a softmax; in fp32 the matmul form pays only inside
    # torch.compile, where the mask, scale and softmax fuse (step 1.31x vs 1.21x HF Llama with SDPA). Eager fp32
    # and inference keep SDPA.
    if q.device.type != "cpu" or not (q.requires_grad and torch.is_grad_enabled()):
        return False
    return q.dtype == torch.bfloat16 or (q.dtype == torch.float32 and torch.compiler.is_compiling())


def causal_attention_bmm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention as matmuls: q (B, H, T, D), k/v (B, KV, T, D) -> (B, H, T, D); same math as SDPA.

    The G = H/KV query heads that share a key head are stacked along the
    query axis, (B, KV, G*T, D), so k and v are never repeated; the causal
    mask is an additive (G*T, T) bias added by the same `baddbmm`.
    """
    B, H, T, D = q.shape
    KV = k.shape[1]
    G = H // KV
    q = (q * D**-0.5).reshape(B * KV, G * T, D)  # heads h = kv*G + g, as SDPA's enable_gqa groups them
    bias = torch.full((T, T), float("-inf"), device=q.device, dtype=q.dtype).triu(1).repeat(G, 1)  # (G*T, T)
    scores = torch.baddbmm(bias, q, k.reshape(B * KV, T, D).transpose(1, 2))  # (B*KV, G*T, T)
    y = torch.bmm(scores.softmax(-1), v.reshape(B * KV, T, D))  # (B*KV, G*T, D)
    return y.view(B, H, T, D)


class Attention(nn.Module):
    """Causal self-attention with grouped-query heads and rotary positions."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, layer_idx: int):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.layer_idx = layer_idx
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)
        self.o_proj._kolm_residual_out = True  # depth-scaled init
        self._fused = _FusedWeight()

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: Any | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C); mask: bool (B, 1, T, Tk) or None for plain causal attention over x alone."""
        B, T, _ = x.shape
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = _fused_projection(self._fused, x, self.q_proj, self.k_proj, self.v_proj)  # (B, T, (H+2KV)*D)
        if qkv is not None:
            qkv = qkv.view(B, T, H + 2 * KV, D)
            qk = apply_rotary(qkv[:, :, : H + KV], cos, sin)  # q and k rotated together: (B, T, H+KV, D)
            q, k, v = qk[:, :, :H], qk[:, :, H:], qkv[:, :, H + KV :]
        else:
            q = apply_rotary(self.q_proj(x).view(B, T, H, D), cos, sin)
            k = apply_rotary(self.k_proj(x).view(B, T, KV, D), cos, sin)
            v = self.v_proj(x).view(B, T, KV, D)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, D), views
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, KV, Tk, D): past + new
        if mask is None and T > 1 and k.shape[2] == T and _explicit_attention(q):
            y = causal_attention_bmm(q, k, v)  # (B, H, T, D)
        else:
            # is_causal only when queries and keys are the same positions (no cache, no padding).
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=mask is None and T > 1 and k.shape[2] == T,
                enable_gqa=KV != H,
            )  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, H * D)
        # Plain layers are called functionally: module-call overhead is a visible share of a decode step.
        return F.linear(y, self.o_proj.weight) if _plain_linear(self.o_proj) else self.o_proj(y)


# ----------------------------------------------------------------------------
# MLP


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) (Shazeer 2020)."""

    def __init__(self, d_model: int, ffn_dim: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, ffn_dim, bias=False)
        self.up_proj = nn.Linear(d_model, ffn_dim, bias=False)
        self.down_proj = nn.Linear(ffn_dim, d_model, bias=False)
        self.down_proj._kolm_residual_out = True  # depth-scaled init
        self._fused = _FusedWeight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = _fused_projection(self._fused, x, self.gate_proj, self.up_proj)
        if gate_up is not None:
            gate, up = gate_up.chunk(2, dim=-1)  # (B, T, F) each
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        h = F.silu(gate) * up
        return F.linear(h, self.down_proj.weight) if _plain_linear(self.down_proj) else self.down_proj(h)


# ----------------------------------------------------------------------------
# Block


class Block(nn.Module):
    """Pre-norm residual block around two given parts: x + mixer(norm(x)), then x + mlp(norm(x)).

    `mixer` mixes information across positions (attention), `mlp` works on
    each position alone; the model builds both and hands them in. They keep
    Llama's names (`self_attn`, `mlp`, `input_layernorm`,
    `post_attention_layernorm`), so checkpoints, PEFT target names and the
    hf-llama export see one layout. Whatever the model passes after `x`
    (rotary tables, mask, cache for attention) goes to the mixer unchanged.
    """

    def __init__(self, d_model: int, mixer: nn.Module, mlp: nn.Module, norm_eps: float = 1e-5):
        super().__init__()
        self.input_layernorm = RMSNorm(d_model, norm_eps)
        self.self_attn = mixer
        self.post_attention_layernorm = RMSNorm(d_model, norm_eps)
        self.mlp = mlp

    def forward(self, x: torch.Tensor, *context: Any) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C); `context` is the mixer's: (cos, sin, mask, cache) for `Attention`."""
        x = x + self.self_attn(self.input_layernorm(x), *context)
        return x + self.mlp(self.post_attention_layernorm(x))
