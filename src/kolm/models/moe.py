"""DeepSeekMoE: a feed-forward layer of shared experts plus routed experts, balanced without an auxiliary loss.

Every token goes through the `shared_experts` (one SwiGLU of
`n_shared * moe_ffn_dim`) and through the `top_k` of `n_routed` small
SwiGLU experts its router picks:

    s = sigmoid(x · Wᵣᵀ)                      affinity of the token to each expert, (N, E), fp32
    chosen = top_k(s + b)                      the bias b only steers the choice ...
    g = s[chosen] / Σ s[chosen] · scale        ... the gate weights come from s alone
    y = shared(x) + Σ_k g_k · expert_k(x)

Balance (DeepSeek-V3, "auxiliary-loss-free"): `gate.e_score_correction_bias`
is not trained by gradients. During training each layer counts how many
tokens each expert received; after every optimizer step `update_bias` moves
the bias of an overloaded expert down and of an underloaded one up by a fixed
`rate` (the sign of the error, so the step does not depend on the batch
size). An optional sequence-level balance loss (`aux_loss_alpha`, V3's
complementary loss, off by default) can be added on top.

Names follow `transformers`' DeepseekV3MoE (`gate.weight`,
`gate.e_score_correction_bias`, `shared_experts.*`), except that routed
experts are separate SwiGLU modules (`experts.N.gate_proj`, ...), so PEFT can
target them like any linear layer; the hf exporter stacks them into the 3-D
tensors `transformers` keeps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kolm.models.blocks import SwiGLU

__all__ = ["Router", "MoE", "load_stats"]


class Router(nn.Module):
    """Sigmoid top-k router with a balancing bias that steers the choice but not the weights."""

    def __init__(self, d_model: int, n_experts: int, top_k: int, scale: float = 1.0):
        super().__init__()
        self.n_experts, self.top_k, self.scale = n_experts, top_k, scale
        self.weight = nn.Parameter(torch.empty(n_experts, d_model))
        self.e_score_correction_bias = nn.Buffer(torch.zeros(n_experts))  # saved and resumed, never trained

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, C) -> (scores (N, E), weights (N, k), chosen experts (N, k)); routing runs in fp32."""
        scores = F.linear(x.float(), self.weight.float()).sigmoid()  # (N, E)
        chosen = torch.topk(scores + self.e_score_correction_bias.float(), self.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, chosen)  # (N, k)
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20) * self.scale
        return scores, weights, chosen


class MoE(nn.Module):
    """Shared + routed SwiGLU experts with top-k routing (see the module docstring)."""

    def __init__(
        self,
        d_model: int,
        moe_ffn_dim: int,
        n_routed: int,
        n_shared: int,
        top_k: int,
        scale: float = 1.0,
        aux_loss_alpha: float = 0.0,
    ):
        super().__init__()
        self.gate = Router(d_model, n_routed, top_k, scale)
        self.experts = nn.ModuleList(SwiGLU(d_model, moe_ffn_dim) for _ in range(n_routed))
        self.shared_experts = SwiGLU(d_model, moe_ffn_dim * n_shared)
        self.aux_loss_alpha = aux_loss_alpha
        # Set by training forwards, read by the model after them; plain attributes, never saved.
        self.load: torch.Tensor | None = None  # (E,) tokens routed to each expert since the last bias update
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        flat = x.reshape(-1, C)  # (N, C)
        scores, weights, chosen = self.gate(flat)
        out = torch.zeros_like(flat)
        # Experts in turn, each over the tokens that chose it: (token, slot) pairs sorted by expert.
        order = chosen.flatten().argsort(stable=True)  # (N·k,)
        counts = torch.bincount(chosen.flatten(), minlength=self.gate.n_experts)  # (E,)
        token = order // self.gate.top_k
        gate_w = weights.flatten()[order].to(x.dtype)
        start = 0
        for e, n in enumerate(counts.tolist()):
            if n:
                idx = token[start : start + n]
                out.index_add_(0, idx, self.experts[e](flat[idx]) * gate_w[start : start + n, None])
                start += n
        if self.training:
            with torch.no_grad():
                self.load = counts.float() if self.load is None else self.load + counts.float()
            self.aux_loss = self._sequence_balance_loss(scores.view(B, T, -1), chosen.view(B, T, -1))
        return out.view(B, T, C) + self.shared_experts(x)

    def _sequence_balance_loss(self, scores: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor | None:
        """V3's sequence-wise balance loss α·Σᵢ fᵢ·Pᵢ per sequence, averaged; None when α is 0.

        fᵢ = E/(k·T) · (tokens of the sequence routed to i), Pᵢ = mean over the
        sequence of the normalised affinity sᵢ / Σⱼ sⱼ. scores (B, T, E), chosen (B, T, k).
        """
        if not self.aux_loss_alpha:
            return None
        B, T, E = scores.shape
        k = chosen.shape[-1]
        hits = torch.zeros(B, E, device=scores.device).scatter_add_(
            1, chosen.reshape(B, -1), torch.ones(B, T * k, device=scores.device)
        )
        f = hits * E / (k * T)  # (B, E); 1 everywhere when balanced
        p = (scores / scores.sum(-1, keepdim=True)).mean(1)  # (B, E)
        return self.aux_loss_alpha * (f * p).sum(-1).mean()

    @torch.no_grad()
    def update_bias(self, rate: float) -> torch.Tensor | None:
        """Move the balancing bias toward equal load (b += rate · sign(mean load - load)); return the load used.

        Under torch.distributed the counts of every rank are summed first, so all
        ranks apply the same update.
        """
        load = self.load
        self.load = None
        if load is None:
            return None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(load)
        bias = self.gate.e_score_correction_bias
        bias.add_(rate * torch.sign(load.mean() - load).to(bias.dtype))
        return load


def load_stats(loads: list[torch.Tensor]) -> dict[str, float]:
    """Expert load of MoE layers as three numbers: the least and most loaded expert relative to an even share
    (1.0 = balanced) and the normalised entropy of the load (1.0 = balanced), over all layers."""
    lo, hi, ent = [], [], []
    for load in loads:
        total = float(load.sum())
        if total <= 0:
            continue
        p = load / total
        E = load.numel()
        lo.append(float(p.min()) * E)
        hi.append(float(p.max()) * E)
        nz = p[p > 0]
        ent.append(float(-(nz * nz.log()).sum()) / math.log(E))
    if not ent:
        return {}
    return {"expert_load_min": min(lo), "expert_load_max": max(hi), "expert_load_entropy": sum(ent) / len(ent)}
