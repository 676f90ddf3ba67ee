"""Multi-head Latent Attention (MLA, DeepSeek-V2/V3): attention whose cache is one small latent per token.

Keys and values are not projected from the hidden state directly. A token is
first compressed to a latent `c` of `kv_lora_rank` values (plus one shared
rotary key of `qk_rope_head_dim` values); each head's key and value are then
up-projected from `c`. Only `c` and the rotary key are cached:
`kv_lora_rank + qk_rope_head_dim` values per token per layer, against
`2 * n_kv_heads * head_dim` for grouped-query attention.

    x ──q_a_proj──> q_a_layernorm ──q_b_proj──> q (H, nope | rope)       (or q_proj when q_lora_rank is 0)
    x ──kv_a_proj_with_mqa──> [c (r) | k_rope (dr)]
    c ──kv_a_layernorm──kv_b_proj──> per head [k_nope (dn) | v (dv)]
    key = [k_nope | rope(k_rope) shared by every head],  query = [q_nope | rope(q_rope)]

Rotary positions only touch the decoupled `rope` dims: were they applied to
keys up-projected from `c`, the up-projection could not be folded into the
query (below), because a rotation sits between them.

Two ways to attend, same numbers:

* expanded (training, prefill): up-project every cached latent into per-head
  keys and values, then ordinary attention;
* absorbed (decode steps, `absorb=True`): fold the key up-projection into
  the query (q_nope · W_uk gives a query in latent space) and the value
  up-projection into the output, so attention runs against the cached
  latents themselves: one "head" of keys `[c | k_rope]` and values `c`,
  shared by all query heads. Per step this reads r + dr values per cached
  token instead of H·(dn + dv). A prefill of many queries expands instead:
  the expansion is shared by all of them and SDPA's fused kernels apply.

Parameter names follow `transformers`' DeepseekV3Attention, and rotary dims
use the half-split layout (`rope_interleave=False` there).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kolm.models.blocks import RMSNorm, _plain_linear, apply_rotary

__all__ = ["MLA"]

# The inner norms of the low-rank paths use DeepSeek's fixed epsilon, not the model's.
LATENT_NORM_EPS = 1e-6


class MLA(nn.Module):
    """Multi-head Latent Attention with a latent cache and an absorbed decode path (see the module docstring)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        q_lora_rank: int,
        kv_lora_rank: int,
        qk_nope_head_dim: int,
        qk_rope_head_dim: int,
        v_head_dim: int,
        layer_idx: int,
    ):
        super().__init__()
        self.n_heads, self.layer_idx = n_heads, layer_idx
        self.q_lora_rank, self.kv_lora_rank = q_lora_rank, kv_lora_rank
        self.nope, self.rope, self.v_dim = qk_nope_head_dim, qk_rope_head_dim, v_head_dim
        self.qk_dim = qk_nope_head_dim + qk_rope_head_dim
        self.scale = self.qk_dim**-0.5
        self.absorb = True  # attend against the latent when decoding from a cache; tests switch it off
        if q_lora_rank:
            self.q_a_proj = nn.Linear(d_model, q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(q_lora_rank, LATENT_NORM_EPS)
            self.q_b_proj = nn.Linear(q_lora_rank, n_heads * self.qk_dim, bias=False)
        else:
            self.q_proj = nn.Linear(d_model, n_heads * self.qk_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d_model, kv_lora_rank + qk_rope_head_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(kv_lora_rank, LATENT_NORM_EPS)
        self.kv_b_proj = nn.Linear(kv_lora_rank, n_heads * (qk_nope_head_dim + v_head_dim), bias=False)
        self.o_proj = nn.Linear(n_heads * v_head_dim, d_model, bias=False)
        self.o_proj._kolm_residual_out = True  # depth-scaled init

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: Any | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C); cos/sin: rotary tables of the rope dims; mask: bool (B, 1, T, Tk) or None (plain causal)."""
        B, T, _ = x.shape
        H = self.n_heads
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if self.q_lora_rank else self.q_proj(x)
        q = q.view(B, T, H, self.qk_dim)
        q_nope, q_rope = q.split([self.nope, self.rope], dim=-1)  # (B, T, H, dn), (B, T, H, dr)
        q_rope = apply_rotary(q_rope, cos, sin)
        c, k_rope = self.kv_a_proj_with_mqa(x).split([self.kv_lora_rank, self.rope], dim=-1)  # (B, T, r), (B, T, dr)
        c = self.kv_a_layernorm(c)
        k_rope = apply_rotary(k_rope[:, :, None], cos, sin)  # (B, T, 1, dr): one rotary key for every head
        # The latent and the rotary key are cached as a one-head "key" and "value" (see models/cache.py).
        c, k_rope = c[:, None], k_rope.transpose(1, 2)  # (B, 1, T, r), (B, 1, T, dr)
        if cache is not None:
            c, k_rope = cache.update(c, k_rope, self.layer_idx)  # (B, 1, Tk, r), (B, 1, Tk, dr): past + new
        Tk = c.shape[2]
        causal = mask is None and T > 1 and Tk == T  # queries and keys are the same positions
        q_nope, q_rope = q_nope.transpose(1, 2), q_rope.transpose(1, 2)  # (B, H, T, ·)
        if self.absorb and cache is not None and T == 1 and _plain_linear(self.kv_b_proj):
            y = self._absorbed(q_nope, q_rope, c, k_rope, mask)
        else:
            kv = self.kv_b_proj(c[:, 0]).view(B, Tk, H, self.nope + self.v_dim).transpose(1, 2)  # (B, H, Tk, dn+dv)
            k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
            k = torch.cat([k_nope, k_rope.expand(B, H, Tk, self.rope)], dim=-1)  # (B, H, Tk, dn+dr)
            qf = torch.cat([q_nope, q_rope], dim=-1)  # (B, H, T, dn+dr)
            if self.v_dim < self.qk_dim:  # SDPA's fused kernels want one head size: pad values, drop the pad after
                v = F.pad(v, (0, self.qk_dim - self.v_dim))
            y = F.scaled_dot_product_attention(qf, k, v, attn_mask=mask, is_causal=causal, scale=self.scale)
            y = y[..., : self.v_dim]
        y = y.transpose(1, 2).reshape(B, T, H * self.v_dim)  # (B, T, H·dv)
        return F.linear(y, self.o_proj.weight) if _plain_linear(self.o_proj) else self.o_proj(y)

    def _absorbed(
        self,
        q_nope: torch.Tensor,
        q_rope: torch.Tensor,
        c: torch.Tensor,
        k_rope: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """One decode step against the cached latents: q_nope·W_uk·cᵀ + q_rope·k_ropeᵀ, then W_uv on the mixed latent.

        q_nope (B, H, 1, dn), q_rope (B, H, 1, dr), c (B, 1, Tk, r), k_rope (B, 1, Tk, dr) -> (B, H, 1, dv).
        The single query sees every cached position (no causal mask); `mask` hides padding.
        """
        w = self.kv_b_proj.weight.view(self.n_heads, self.nope + self.v_dim, self.kv_lora_rank)
        w_uk, w_uv = w[:, : self.nope], w[:, self.nope :]  # (H, dn, r), (H, dv, r)
        q_latent = torch.einsum("bhtd,hdr->bhtr", q_nope, w_uk)  # (B, H, 1, r): the query in latent space
        # The score is unchanged by the fold, so the softmax scale stays that of the expanded head (dn + dr).
        scores = (q_latent @ c.transpose(-1, -2) + q_rope @ k_rope.transpose(-1, -2)) * self.scale  # (B, H, 1, Tk)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        y = scores.softmax(-1, dtype=torch.float32).to(c.dtype) @ c  # (B, H, 1, r): one latent head shared by all
        return torch.einsum("bhtr,hvr->bhtv", y, w_uv)  # (B, H, 1, dv)
