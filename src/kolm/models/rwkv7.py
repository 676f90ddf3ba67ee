"""KolmRWKV7: an RWKV-7 ("Goose") language model, packaged as a Hugging Face model.

Read top-down: config -> the state update (one step, and the chunked form)
-> time mixing -> channel mixing -> block -> base model -> heads -> what the
registry needs.

Each head of a time-mixing layer keeps a state matrix S (head_size x
head_size, values x keys, fp32) and updates it with the generalised delta
rule:

    S_t = S_{t-1} · (diag(w_t) - κ_tᵀ (a_t ⊙ κ_t)) + v_t k_tᵀ        y_t = S_t r_t

w_t in (0.545, 1) decays each key channel, κ_t is the normalised "removal
key" and a_t in (0, 1) the in-context learning rate: the state first forgets
a fraction a of what it stored along κ, then writes v along k. Around it,
RWKV-7 keeps RWKV's token shift (every projection sees a learned mix of this
token and the previous one), a "value residual" (layers after the first mix
their values toward the first layer's), a bonus term (r·(r_k ⊙ k))·v for the
current token, a per-head GroupNorm and an output gate. Channel mixing is a
token-shifted squared-ReLU MLP.

Two forms of the same recurrence: `wkv_step` (decode, one token) and
`wkv_chunked` (training and prefill): inside a chunk of L tokens the
transition is diagonal plus rank one, so the states' contributions along κ
(u_t = S_{t-1}·(-κ_t)) satisfy a unit lower-triangular L x L system that is
solved at once; across chunks only the state passes. Both, and a plain
loop over the paper's equations, agree (tests/models/test_models_rwkv7.py).

Padding never reaches the state: padded positions have w = 1, a = 0, k = v =
0 (the transition is the identity and nothing is written), and their
token-shift inputs are zero, as at the start of a sequence.
There is no `transformers` RWKV-7 class; the parameter names follow the
RWKV-LM x070 reference (`att.receptance`, `att.w1`, `ffn.key`, ...).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast

from kolm.model_config import ModelConfigError
from kolm.models.cache import RecurrentState
from kolm.models.heads import CausalLMHead, RecurrentGeneration, SequenceClassifierHead

__all__ = [
    "KolmRWKV7Config",
    "KolmRWKV7PreTrainedModel",
    "KolmRWKV7Model",
    "KolmRWKV7ForCausalLM",
    "KolmRWKV7ForSequenceClassification",
    "wkv_step",
    "wkv_chunked",
    "config_from_section",
    "flops_per_token",
]

DECAY_SCALE = math.exp(-0.5)  # log w = -e^{-1/2}·sigmoid(·): the decay stays within (0.545, 1)
GROUP_NORM_EPS = 64e-5  # RWKV's per-head norm epsilon (1e-5 x head_size_divisor² with divisor 8)


# ----------------------------------------------------------------------------
# Config


class KolmRWKV7Config(PretrainedConfig):
    """Shape of a KolmRWKV7 model (saved as config.json, model_type "kolm_rwkv7")."""

    model_type = "kolm_rwkv7"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layers",
        "intermediate_size": "ffn_dim",
        "max_position_embeddings": "max_seq_len",
        "layer_norm_eps": "norm_eps",
        "initializer_range": "init_std",
    }

    vocab_size: int = 32000
    d_model: int = 128
    n_layers: int = 4
    head_size: int = 32
    ffn_dim: int = 512
    decay_rank: int = 32  # ranks of the small MLPs that make w, a, the value-residual gate and the output gate
    a_rank: int = 32
    v_rank: int = 16
    gate_rank: int = 64
    chunk_size: int = 16
    max_seq_len: int = 256
    norm_eps: float = 1e-5
    init_std: float = 0.02
    tie_word_embeddings: bool = False
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        problems = []
        if self.d_model % self.head_size:
            problems.append(f"d_model {self.d_model} is not a multiple of head_size {self.head_size}")
        if not 1 <= self.chunk_size <= 64:
            problems.append(f"chunk_size {self.chunk_size} must be between 1 and 64 (fp32 range of in-chunk decays)")
        if problems:
            raise ModelConfigError("invalid KolmRWKV7 config: " + "; ".join(problems))

    @property
    def n_heads(self) -> int:
        return self.d_model // self.head_size


# ----------------------------------------------------------------------------
# The state update


def wkv_step(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kappa: torch.Tensor,
    a: torch.Tensor,
    S: torch.Tensor,
) -> torch.Tensor:
    """One token: update S (B, H, N, N) [values x keys] in place; inputs (B, H, N); returns y = S r (B, H, N)."""
    r, w, k, v, kappa, a = (z.float() for z in (r, log_w.exp(), k, v, kappa, a))
    removed = torch.einsum("bhvk,bhk->bhv", S, kappa)  # S κ: what the state holds along κ
    S.mul_(w[:, :, None, :]).sub_(removed[..., None] * (kappa * a)[:, :, None, :]).add_(v[..., None] * k[:, :, None, :])
    return torch.einsum("bhvk,bhk->bhv", S, r)


def wkv_chunked(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kappa: torch.Tensor,
    a: torch.Tensor,
    S: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All tokens: inputs (B, T, H, N), initial state S (B, H, N, N) -> outputs (B, T, H, N), final state. fp32.

    Within a chunk, with γ_t = w_1 ⊙ ... ⊙ w_t (elementwise over keys) and
    the transition written as diag(w_t) + α_t β_tᵀ (α = -κ, β = a ⊙ κ):

        S_t = S_0 Γ_t + Σ_{s<=t} (u_s β_sᵀ + v_s k_sᵀ) Γ_t Γ_s⁻¹,   u_t = S_{t-1} α_t

    u depends on the earlier u's linearly (a strictly lower-triangular L x L
    system), so all u of a chunk come from one triangular solve; outputs and
    the next chunk's state then follow by matrix products. A decay between two
    positions, Γ_t Γ_s⁻¹, is split as γ_t · (1/γ_s) so that every pair term is
    a plain matrix product; with w >= e^{-0.61} a chunk of L tokens keeps both
    factors within e^{±0.61·L}, far inside fp32 for L <= 64 (the config's limit).
    Everything but the state's own path is computed for all chunks at once.
    """
    B, T, H, N = r.shape
    L = chunk
    pad = (-T) % L
    # Padded tail: log w = 0, a = k = v = 0 (identity transition, nothing written).
    r, log_w, k, v, kappa, a = (F.pad(z.float(), (0, 0, 0, 0, 0, pad)) for z in (r, log_w, k, v, kappa, a))
    nc = (T + pad) // L
    r, log_w, k, v, kappa, a = (z.view(B, nc, L, H, N).permute(1, 0, 3, 2, 4) for z in (r, log_w, k, v, kappa, a))
    alpha, beta = -kappa, kappa * a  # (nc, B, H, L, N)
    cum = log_w.cumsum(-2)  # log γ_t (inclusive)
    a_dec = alpha * (cum - log_w).exp()  # α_t ⊙ γ_{t-1}
    r_dec = r * cum.exp()  # r_t ⊙ γ_t
    b_inv, k_inv = beta * (-cum).exp(), k * (-cum).exp()  # β_s / γ_s, k_s / γ_s
    t_ge_s = torch.tril(torch.ones(L, L, dtype=torch.bool, device=r.device))
    t_gt_s = torch.tril(t_ge_s, diagonal=-1)
    eye = torch.eye(L, device=r.device)
    # u_t = S_0 (γ_{t-1} ⊙ α_t) + Σ_{s<t} [(α_t γ_{t-1}/γ_s · β_s) u_s + (α_t γ_{t-1}/γ_s · k_s) v_s]
    m_uu = (a_dec @ b_inv.transpose(-1, -2)).masked_fill(~t_gt_s, 0)  # (nc, B, H, L, L)
    m_uv = (a_dec @ k_inv.transpose(-1, -2)).masked_fill(~t_gt_s, 0)
    solve = torch.linalg.solve_triangular(eye - m_uu, eye.expand_as(m_uu), upper=False, unitriangular=True)
    u_from_v = m_uv @ v  # (nc, B, H, L, N_v)
    # y_t = S_t r_t = S_0 (γ_t ⊙ r_t) + Σ_{s<=t} [(r_t γ_t/γ_s · β_s) u_s + (r_t γ_t/γ_s · k_s) v_s]
    q_u = (r_dec @ b_inv.transpose(-1, -2)).masked_fill(~t_ge_s, 0)
    q_v = (r_dec @ k_inv.transpose(-1, -2)).masked_fill(~t_ge_s, 0)
    y_from_v = q_v @ v
    # The state after a chunk: S_0 Γ_L + Σ_s (u_s β_sᵀ + v_s k_sᵀ) Γ_L Γ_s⁻¹ (decays to the end are <= 1).
    to_end = (cum[..., -1:, :] - cum).exp()
    b_end, k_end = beta * to_end, k * to_end
    decay_all = cum[..., -1:, :].exp()  # Γ_L per key channel, (nc, B, H, 1, N)
    S = S.float()
    ys = []
    for c in range(nc):
        u = solve[c] @ (a_dec[c] @ S.transpose(-1, -2) + u_from_v[c])  # (B, H, L, N_v)
        ys.append(r_dec[c] @ S.transpose(-1, -2) + q_u[c] @ u + y_from_v[c])
        S = S * decay_all[c] + u.transpose(-1, -2) @ b_end[c] + v[c].transpose(-1, -2) @ k_end[c]
    y = torch.stack(ys).permute(1, 0, 3, 2, 4).reshape(B, nc * L, H, N)[:, :T]
    return y, S


# ----------------------------------------------------------------------------
# Time mixing and channel mixing


def _shift(x: torch.Tensor, last: torch.Tensor | None) -> torch.Tensor:
    """The previous token's input at every position: (B, T, C), with `last` (B, C) or zeros before the first."""
    first = last[:, None].to(x.dtype) if last is not None else torch.zeros_like(x[:, :1])
    return torch.cat([first, x[:, :-1]], dim=1)


class TimeMix(nn.Module):
    """RWKV-7 time mixing: token shift -> r, w, k, v, a, g -> generalised delta rule per head -> norm, bonus, gate."""

    def __init__(self, config: KolmRWKV7Config, layer_idx: int):
        super().__init__()
        c = config
        C, H, N = c.d_model, c.n_heads, c.head_size
        self.layer_idx, self.n_heads, self.head_size, self.chunk = layer_idx, H, N, c.chunk_size
        # Token-shift mixes: each projection's input is x + mix ⊙ (previous - x).
        self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g = (nn.Parameter(torch.empty(C)) for _ in range(6))
        self.w0, self.w1, self.w2 = (
            nn.Parameter(torch.empty(C)),
            nn.Parameter(torch.empty(C, c.decay_rank)),
            nn.Parameter(torch.empty(c.decay_rank, C)),
        )
        self.a0, self.a1, self.a2 = (
            nn.Parameter(torch.empty(C)),
            nn.Parameter(torch.empty(C, c.a_rank)),
            nn.Parameter(torch.empty(c.a_rank, C)),
        )
        if layer_idx > 0:  # the value residual: layers after the first mix toward the first layer's values
            self.v0, self.v1, self.v2 = (
                nn.Parameter(torch.empty(C)),
                nn.Parameter(torch.empty(C, c.v_rank)),
                nn.Parameter(torch.empty(c.v_rank, C)),
            )
        self.g1, self.g2 = nn.Parameter(torch.empty(C, c.gate_rank)), nn.Parameter(torch.empty(c.gate_rank, C))
        self.k_k = nn.Parameter(torch.empty(C))  # which part of k becomes the removal key κ
        self.k_a = nn.Parameter(torch.empty(C))  # how much the learning rate a scales the written key
        self.r_k = nn.Parameter(torch.empty(H, N))  # bonus of the current token
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=GROUP_NORM_EPS)

    def forward(
        self,
        x: torch.Tensor,
        v_first: torch.Tensor | None,
        mask: torch.Tensor | None,
        state: RecurrentState | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, C) normalised input (zero at padding) -> (output (B, T, C), the first layer's values v_first)."""
        B, T, C = x.shape
        H, N = self.n_heads, self.head_size
        last = state.get("att_shift", self.layer_idx) if state is not None else None
        dx = _shift(x, last) - x  # (B, T, C)
        if last is not None:
            last.copy_(x[:, -1])
        xr, xw, xk, xv, xa, xg = (x + dx * m for m in (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g))
        r = self.receptance(xr)
        log_w = -DECAY_SCALE * torch.sigmoid(self.w0 + torch.tanh(xw @ self.w1) @ self.w2).float()  # (B, T, C)
        k = self.key(xk)
        v = self.value(xv)
        if v_first is None:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)  # in-context learning rate, (0, 1)
        g = torch.sigmoid(xg @ self.g1) @ self.g2  # output gate
        kappa = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1)  # removal key: unit length per head
        k = k * (1 + (a - 1) * self.k_a)
        if mask is not None:  # padding: identity transition (w = 1, a = 0) and nothing written (k = v = 0)
            m = mask[..., None].to(x.dtype)
            log_w, a, k, v = log_w * m, a * m, k * m, v * m
        heads = [z.view(B, T, H, N) for z in (r, log_w, k, v, a)]
        r4, w4, k4, v4, a4 = heads
        if state is not None and T == 1:
            S = state.get("wkv", self.layer_idx)
            y = wkv_step(r4[:, 0], w4[:, 0], k4[:, 0], v4[:, 0], kappa[:, 0], a4[:, 0], S)[:, None]
        else:
            S0 = state.get("wkv", self.layer_idx) if state is not None else x.new_zeros(B, H, N, N, dtype=torch.float32)
            y, S = wkv_chunked(r4, w4, k4, v4, kappa, a4, S0, self.chunk)
            if state is not None:
                state.get("wkv", self.layer_idx).copy_(S)
        y = self.ln_x(y.reshape(B * T, C).to(x.dtype)).view(B, T, C)
        bonus = ((r4 * k4 * self.r_k).sum(-1, keepdim=True) * v4).reshape(B, T, C)  # the current token, directly
        return self.output((y + bonus) * g), v_first


class ChannelMix(nn.Module):
    """RWKV channel mixing: value(relu(key(token-shifted x))²)."""

    def __init__(self, config: KolmRWKV7Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.x_k = nn.Parameter(torch.empty(config.d_model))
        self.key = nn.Linear(config.d_model, config.ffn_dim, bias=False)
        self.value = nn.Linear(config.ffn_dim, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, state: RecurrentState | None) -> torch.Tensor:
        last = state.get("ffn_shift", self.layer_idx) if state is not None else None
        xk = x + (_shift(x, last) - x) * self.x_k
        if last is not None:
            last.copy_(x[:, -1])
        return self.value(torch.relu(self.key(xk)) ** 2)


class RWKV7Block(nn.Module):
    """x + att(ln1(x)), then x + ffn(ln2(x)); padded positions enter both mixers as zeros."""

    def __init__(self, config: KolmRWKV7Config, layer_idx: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.att = TimeMix(config, layer_idx)
        self.ln2 = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.ffn = ChannelMix(config, layer_idx)

    def forward(
        self, x: torch.Tensor, v_first: torch.Tensor | None, mask: torch.Tensor | None, state: RecurrentState | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = mask[..., None].to(x.dtype) if mask is not None else None
        h = self.ln1(x)
        att, v_first = self.att(h * m if m is not None else h, v_first, mask, state)
        x = x + att
        h = self.ln2(x)
        return x + self.ffn(h * m if m is not None else h, state), v_first


# ----------------------------------------------------------------------------
# Shared Hugging Face plumbing


class KolmRWKV7PreTrainedModel(PreTrainedModel):
    """Weight init, loading and saving conventions shared by every KolmRWKV7 head."""

    config_class = KolmRWKV7Config
    config: KolmRWKV7Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["RWKV7Block"]
    _is_stateful = True

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module (RWKV-7's scheme, simplified where it only shaped the start of training).

        With layer l of L, r = 1 - l/L and d_i = i/C over the channels:

        * token-shift mixes: 1 - d^(0.2 r) for r and g, 1 - d^(0.9 r) for w and
          a, 1 - d^(0.7 r) for k and v, 1 - d^(r⁴) in channel mixing: deep
          layers look back less, and channels differ;
        * decay bias w0_i = -6.5 + 5 (i/(C-1))^(0.85 + (l/(L-1))^0.5): channels
          from long to short memory; a0 = 0, v0 = 1; the first matrices of the
          small MLPs (w1, a1, v1, g1) 0 except g1, the second ones normal(0, 0.1/sqrt(rank));
        * k_k = 0.85, k_a = 1, r_k = 0; the per-head norm's gain ((1 + l)/L)^0.7;
        * receptance, key, value: uniform(±0.5/sqrt(C)) (key ±0.05/sqrt(C));
          output and the channel-mix value: 0, so each block starts as the identity;
        * g1 and the channel-mix key: normal(0, init_std); embeddings normal(0, init_std);
          LayerNorms: gain 1, bias 0.
        """
        c = self.config
        std = c.init_std
        if isinstance(module, TimeMix):
            C, L, layer = c.d_model, c.n_layers, module.layer_idx
            r1 = 1.0 - layer / L
            r0 = layer / (L - 1) if L > 1 else 0.0
            ddd = torch.arange(C, dtype=torch.float32) / C
            for name, power in (("x_r", 0.2), ("x_w", 0.9), ("x_k", 0.7), ("x_v", 0.7), ("x_a", 0.9), ("x_g", 0.2)):
                init.copy_(getattr(module, name), 1.0 - ddd.pow(power * r1))
            n = torch.arange(C, dtype=torch.float32) / max(C - 1, 1)
            init.copy_(module.w0, -6.5 + 5.0 * n.pow(0.85 + r0**0.5))
            init.zeros_(module.a0)
            for first, second in (("w1", "w2"), ("a1", "a2"), ("v1", "v2"), ("g1", "g2")):
                if hasattr(module, first):
                    rank = getattr(module, first).shape[1]
                    if first == "g1":
                        init.normal_(module.g1, mean=0.0, std=std)
                    else:
                        init.zeros_(getattr(module, first))
                    init.normal_(getattr(module, second), mean=0.0, std=0.1 / math.sqrt(rank))
            if hasattr(module, "v0"):
                init.ones_(module.v0)
            init.constant_(module.k_k, 0.85)
            init.ones_(module.k_a)
            init.zeros_(module.r_k)
            bound = 0.5 / math.sqrt(C)
            init.uniform_(module.receptance.weight, -bound, bound)
            init.uniform_(module.key.weight, -0.1 * bound, 0.1 * bound)
            init.uniform_(module.value.weight, -bound, bound)
            init.zeros_(module.output.weight)
            init.constant_(module.ln_x.weight, ((1 + layer) / L) ** 0.7)
            init.zeros_(module.ln_x.bias)
        elif isinstance(module, ChannelMix):
            r1 = 1.0 - module.layer_idx / c.n_layers
            ddd = torch.arange(c.d_model, dtype=torch.float32) / c.d_model
            init.copy_(module.x_k, 1.0 - ddd.pow(r1**4))
            init.normal_(module.key.weight, mean=0.0, std=std)
            init.zeros_(module.value.weight)
        elif isinstance(module, nn.Linear):  # the mixers' own layers are set again by their parent (visited after)
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)


# ----------------------------------------------------------------------------
# Base model


class KolmRWKV7Model(KolmRWKV7PreTrainedModel):
    """Token embedding -> LayerNorm -> N RWKV-7 blocks -> final LayerNorm. Returns hidden states (B, T, C)."""

    def __init__(self, config: KolmRWKV7Config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.ln0 = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.layers = nn.ModuleList(RWKV7Block(config, i) for i in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,  # accepted for the common call signature; no positions here
        cache: Any | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        past_key_values: Any | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T, _ = x.shape
        state = cache if cache is not None else past_key_values
        if state is not None and not isinstance(state, RecurrentState):
            raise ValueError("KolmRWKV7 takes its own RecurrentState as cache (model.new_cache(...))")
        if state is None and use_cache and not self.training:
            state = self.new_state(B)
        mask = None
        if attention_mask is not None:
            if attention_mask.dim() != 2:
                raise ValueError("attention_mask must be 2-D (batch, past + new tokens): 1 for tokens, 0 for padding")
            if not bool(attention_mask[:, -T:].all()):
                mask = attention_mask[:, -T:]
        x = self.ln0(x)
        v_first = None
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if checkpointing:
                x, v_first = self._gradient_checkpointing_func(layer.__call__, x, v_first, mask, state)
            else:
                x, v_first = layer(x, v_first, mask, state)
        if state is not None:
            state.advance(T)
        return BaseModelOutputWithPast(last_hidden_state=self.ln_out(x), cache=state)

    def new_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> RecurrentState:
        """A zero state: per layer and row both token-shift inputs (C) and the fp32 wkv state (H, N, N)."""
        c = self.config
        p = self.embed_tokens.weight
        return RecurrentState(
            c.n_layers,
            batch_size,
            {"att_shift": (c.d_model,), "wkv": (c.n_heads, c.head_size, c.head_size), "ffn_shift": (c.d_model,)},
            device or p.device,
            dtype or p.dtype,
            dtypes={"wkv": torch.float32},
        )


# ----------------------------------------------------------------------------
# Heads


class KolmRWKV7ForCausalLM(RecurrentGeneration, CausalLMHead, KolmRWKV7PreTrainedModel, GenerationMixin):
    """KolmRWKV7 with a next-token head; works with kolm's engine, `generate()`, PEFT and TRL."""

    base_model_class = KolmRWKV7Model


class KolmRWKV7ForSequenceClassification(SequenceClassifierHead, KolmRWKV7PreTrainedModel):
    """KolmRWKV7 with a linear `score` head on the last real token (the same head as KolmGPT's)."""

    base_model_class = KolmRWKV7Model


# ----------------------------------------------------------------------------
# What the registry needs


def config_from_section(model_cfg: Any, **shared: Any) -> KolmRWKV7Config:
    """KolmRWKV7Config from a run's `model:` section (arch rwkv7): `shared` fields + `model.rwkv7`."""
    s = model_cfg.rwkv7
    return KolmRWKV7Config(
        **shared,
        head_size=s.head_size,
        ffn_dim=s.ffn_dim,
        decay_rank=s.decay_rank,
        a_rank=s.a_rank,
        v_rank=s.v_rank,
        gate_rank=s.gate_rank,
        chunk_size=s.chunk_size,
    )


def param_count(config: KolmRWKV7Config) -> int:
    """Non-embedding parameters (a tied output head counts as the embedding)."""
    c = config
    C = c.d_model
    mlps = c.decay_rank + c.a_rank + c.gate_rank  # each rank r costs 2·r·C
    att = 4 * C * C + 6 * C + 2 * C * mlps + 2 * C + 3 * C + 2 * C  # r k v o; mixes; MLPs; w0 a0; k_k k_a r_k; ln_x
    ffn = C + 2 * C * c.ffn_dim
    per_layer = att + ffn + 4 * C  # + ln1, ln2
    value_residual = (c.n_layers - 1) * (C + 2 * C * c.v_rank)
    return c.n_layers * per_layer + value_residual + 4 * C + (0 if c.tie_word_embeddings else c.vocab_size * C)


def flops_per_token(config: KolmRWKV7Config, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weights plus 3x the state update's forward cost, 8·C·head_size per layer
    (decay, removal, write and read of an H x N x N state); independent of the sequence length."""
    c = config
    return 6.0 * param_count(c) + 3.0 * c.n_layers * 8 * c.d_model * c.head_size
