"""KolmMamba2: a Mamba-2 language model (selective state-space mixer, SSD scan), packaged as a Hugging Face model.

Read top-down: config -> the SSD scan (chunked, and one recurrent step) ->
gated norm -> mixer -> block -> base model -> heads -> what the registry needs.

A Mamba-2 layer keeps, per head, a state matrix h (head_dim x state_size)
that every token decays and writes into:

    h_t = exp(Δ_t·A) · h_{t-1} + Δ_t · x_t ⊗ B_t        y_t = h_t · C_t + D · x_t

with a scalar A < 0 per head (so the decay is a number, which is what makes
the chunked "state-space duality" form possible) and Δ, B, C computed from
the token. Training and prefill use the chunked form: inside a chunk the
outputs are a masked, decay-weighted attention-like product (quadratic in
the chunk length, matmul friendly); across chunks only the states pass,
through the plain recurrence. Decoding runs the recurrence one token at a
time. Both give the same numbers (tests/models/test_models_mamba2.py).

Notable choices:

* Parameter and computation layout follow `transformers`' Mamba2Mixer (one
  `in_proj` giving gate z, the conv input [x | B | C] and Δ; a depthwise causal
  `conv1d` with bias; `dt_bias`, `A_log`, `D`; the gated RMSNorm by groups;
  `out_proj`), so `kolm export --format hf` renames three prefixes and the
  exported `Mamba2ForCausalLM` reproduces our logits.
* The inference state (`models.cache.RecurrentState`) holds per layer and
  row the last `conv_kernel - 1` conv inputs and the fp32 scan state; its size
  does not depend on the sequence length.
* Padding never reaches the state: padded positions are zeroed before the
  conv, after the conv, and get Δ = 0 (no decay, no write), so a left-padded
  prompt leaves exactly the state of the unpadded one.
* Pure PyTorch on every device (no `mamba_ssm` kernels).
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
from kolm.models.blocks import RMSNorm
from kolm.models.cache import RecurrentState
from kolm.models.heads import CausalLMHead, RecurrentGeneration, SequenceClassifierHead

__all__ = [
    "KolmMamba2Config",
    "KolmMamba2PreTrainedModel",
    "KolmMamba2Model",
    "KolmMamba2ForCausalLM",
    "KolmMamba2ForSequenceClassification",
    "ssd_scan",
    "ssd_step",
    "config_from_section",
    "flops_per_token",
]


# ----------------------------------------------------------------------------
# Config


class KolmMamba2Config(PretrainedConfig):
    """Shape of a KolmMamba2 model (saved as config.json, model_type "kolm_mamba2")."""

    model_type = "kolm_mamba2"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layers",
        "max_position_embeddings": "max_seq_len",
        "rms_norm_eps": "norm_eps",
        "initializer_range": "init_std",
    }

    vocab_size: int = 32000
    d_model: int = 128
    n_layers: int = 4
    d_state: int = 32  # N: state size per head and channel
    head_dim: int = 16  # P
    expand: int = 2  # inner width = expand * d_model = n_heads * head_dim
    n_groups: int = 1  # heads sharing one B and C
    conv_kernel: int = 4
    chunk_size: int = 64
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_floor: float = 1e-4
    max_seq_len: int = 256
    norm_eps: float = 1e-5
    init_std: float = 0.02
    tie_word_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        problems = []
        if (self.expand * self.d_model) % self.head_dim:
            problems.append(
                f"expand * d_model = {self.expand * self.d_model} is not a multiple of head_dim {self.head_dim}"
            )
        elif self.n_heads % self.n_groups:
            problems.append(f"heads ({self.n_heads}) is not a multiple of n_groups {self.n_groups}")
        if problems:
            raise ModelConfigError("invalid KolmMamba2 config: " + "; ".join(problems))

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def n_heads(self) -> int:
        return self.d_inner // self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.n_groups * self.d_state  # the conv runs over [x | B | C]


# ----------------------------------------------------------------------------
# The scan


def _segsum(a: torch.Tensor) -> torch.Tensor:
    """(..., L) -> (..., L, L): out[i, j] = a[j+1] + ... + a[i] for i >= j, -inf above the diagonal.

    Summing masked copies instead of subtracting cumulative sums keeps the
    exponent exact for long chunks (no difference of two large numbers).
    """
    L = a.shape[-1]
    a = a[..., None].expand(*a.shape, L)  # (..., L, L): row i holds a_i in every column
    below = torch.tril(torch.ones(L, L, dtype=torch.bool, device=a.device), diagonal=-1)
    s = a.masked_fill(~below, 0).cumsum(-2)  # (i, j): a_{j+1} + ... + a_i
    return s.masked_fill(~torch.tril(torch.ones_like(below)), float("-inf"))


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk: int,
    initial: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked SSD scan in fp32: outputs (b, t, h, p) and the final state (b, h, p, n), without the D skip.

    x (b, t, h, p), dt (b, t, h) after softplus, A (h,) negative, B and C
    (b, t, g, n), initial state (b, h, p, n) or None (zeros). Four steps per
    chunk of `chunk` positions, indices c = chunk, l/s = position in it:
    (1) outputs from inside the chunk, (2) each chunk's own final state,
    (3) the recurrence over chunk states, (4) outputs from the state entering
    the chunk.
    """
    b, t, h, p = x.shape
    g = B.shape[2]
    j = h // g  # heads per group: B and C are shared by them, so C·B is computed once per group
    x = x.float() * dt[..., None].float()  # Δ·x: the write of each token
    a = A.float() * dt.float()  # (b, t, h): log of each token's decay
    pad = (-t) % chunk  # padded tail: a = 0 and x = 0, so it neither decays nor writes
    x, a, B, C = (F.pad(z.float(), (0, 0) * (z.dim() - 2) + (0, pad)) for z in (x, a, B, C))
    nc = (t + pad) // chunk
    x = x.reshape(b, nc, chunk, g, j, p)  # (b, c, l, g, j, p)
    B, C = (z.reshape(b, nc, chunk, g, -1) for z in (B, C))  # (b, c, l, g, n)
    a = a.reshape(b, nc, chunk, g, j).permute(0, 3, 4, 1, 2)  # (b, g, j, c, l)
    a_cum = a.cumsum(-1)  # log decay from the chunk start to l (inclusive)

    # (1) Inside a chunk: y_l = Σ_{s<=l} (C_l·B_s) · exp(a_{s+1} + ... + a_l) · x_s.
    scores = torch.einsum("bclgn,bcsgn->bgcls", C, B)[:, :, None] * torch.exp(_segsum(a))  # (b, g, j, c, l, s)
    y_diag = torch.einsum("bgjcls,bcsgjp->bclgjp", scores, x)

    # (2) The state each chunk leaves behind if it started from zero: Σ_s exp(a_{s+1} + ... + a_end) · x_s ⊗ B_s.
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, g, j, c, l)
    chunk_states = torch.einsum("bclgn,bgjcl,bclgjp->bcgjpn", B, to_end, x)

    # (3) Across chunks: the state entering chunk i is the decayed sum of the chunk states before it.
    start = initial.float().view(b, 1, g, j, p, -1) if initial is not None else torch.zeros_like(chunk_states[:, :1])
    states = torch.cat([start, chunk_states], dim=1)  # (b, c+1, g, j, p, n)
    across = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, g, j, c+1, c+1)
    states = torch.einsum("bgjzc,bcgjpn->bzgjpn", across, states)
    entering, final = states[:, :-1], states[:, -1].reshape(b, h, p, -1)  # (b, c, g, j, p, n), (b, h, p, n)

    # (4) What the entering state contributes inside the chunk: C_l · state · exp(a_1 + ... + a_l).
    y_off = torch.einsum("bclgn,bcgjpn,bgjcl->bclgjp", C, entering, torch.exp(a_cum))
    y = (y_diag + y_off).reshape(b, nc * chunk, h, p)[:, :t]
    return y, final


def ssd_step(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> torch.Tensor:
    """One recurrent step, updating `state` (b, h, p, n) in place; x (b, h, p), dt (b, h), B/C (b, g, n) -> y (b, h, p)."""
    h = x.shape[1]
    B = B.float().repeat_interleave(h // B.shape[1], dim=1)  # (b, h, n)
    C = C.float().repeat_interleave(h // C.shape[1], dim=1)
    dt = dt.float()
    decay = torch.exp(dt * A.float())[..., None, None]  # (b, h, 1, 1)
    state.mul_(decay).add_((dt[..., None] * x.float())[..., None] * B[:, :, None, :])  # h = e^{ΔA} h + Δ x ⊗ B
    return torch.einsum("bhpn,bhn->bhp", state, C)


# ----------------------------------------------------------------------------
# Mixer and block


class GatedRMSNorm(nn.Module):
    """RMSNorm of y · silu(z) within each of `groups` groups of channels (Mamba-2's output norm), in fp32."""

    def __init__(self, dim: int, groups: int, eps: float):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = y.dtype
        y = y.float() * F.silu(z.float())
        shape = y.shape
        y = y.view(*shape[:-1], self.groups, -1)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.view(shape).to(dtype)


class Mamba2Mixer(nn.Module):
    """in_proj -> causal depthwise conv over [x | B | C] -> SSD scan (or one step) -> gated norm -> out_proj."""

    def __init__(self, config: KolmMamba2Config, layer_idx: int):
        super().__init__()
        c = config
        self.layer_idx = layer_idx
        self.d_inner, self.n_heads, self.head_dim = c.d_inner, c.n_heads, c.head_dim
        self.n_groups, self.d_state, self.chunk = c.n_groups, c.d_state, c.chunk_size
        self.kernel = c.conv_kernel
        conv_dim = c.conv_dim
        self.in_proj = nn.Linear(c.d_model, c.d_inner + conv_dim + c.n_heads, bias=False)  # [z | x B C | Δ]
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, c.conv_kernel, groups=conv_dim, padding=c.conv_kernel - 1)
        self.dt_bias = nn.Parameter(torch.empty(c.n_heads))
        self.A_log = nn.Parameter(torch.empty(c.n_heads))  # A = -exp(A_log) < 0: every head decays
        self.D = nn.Parameter(torch.empty(c.n_heads))
        self.norm = GatedRMSNorm(c.d_inner, c.n_groups, c.norm_eps)
        self.out_proj = nn.Linear(c.d_inner, c.d_model, bias=False)
        self.out_proj._kolm_residual_out = True  # depth-scaled init

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None, state: Any | None = None) -> torch.Tensor:
        """u: (B, T, C); mask: (B, T) of the new tokens, 1 real / 0 padding, or None; state: RecurrentState or None."""
        Bsz, T, _ = u.shape
        H, P, G, N = self.n_heads, self.head_dim, self.n_groups, self.d_state
        if mask is not None:
            u = u * mask[..., None].to(u.dtype)  # padding enters the conv as zeros
        conv_dim = self.conv1d.in_channels
        z, xbc, dt = self.in_proj(u).split([self.d_inner, conv_dim, H], dim=-1)
        xbc = xbc.transpose(1, 2)  # (B, conv_dim, T)
        w = self.conv1d.weight  # (conv_dim, 1, K)
        if state is not None:
            conv_state = state.get("conv", self.layer_idx)  # (B, conv_dim, K-1): the last K-1 inputs
            full = torch.cat([conv_state.to(xbc.dtype), xbc], dim=-1)  # (B, conv_dim, K-1+T)
            conv_state.copy_(full[:, :, -(self.kernel - 1) :])
            xbc = F.conv1d(full, w, self.conv1d.bias, groups=conv_dim)  # valid conv: T outputs
        else:
            xbc = F.conv1d(F.pad(xbc, (self.kernel - 1, 0)), w, self.conv1d.bias, groups=conv_dim)  # causal
        xbc = F.silu(xbc).transpose(1, 2)  # (B, T, conv_dim)
        dt = F.softplus(dt + self.dt_bias)  # (B, T, H): step sizes Δ > 0
        if mask is not None:
            m = mask[..., None].to(xbc.dtype)
            xbc, dt = xbc * m, dt * m  # padding neither writes (x = B = 0) nor decays (Δ = 0) the state
        x, Bm, Cm = xbc.split([self.d_inner, G * N, G * N], dim=-1)
        x = x.reshape(Bsz, T, H, P)
        A = -torch.exp(self.A_log.float())  # (H,)
        if state is not None and T == 1:
            y = ssd_step(x[:, 0], dt[:, 0], A, Bm.view(Bsz, G, N), Cm.view(Bsz, G, N), state.get("ssm", self.layer_idx))
            y = y[:, None]  # (B, 1, H, P)
        else:
            ssm = state.get("ssm", self.layer_idx) if state is not None else None
            y, final = ssd_scan(x, dt, A, Bm.view(Bsz, T, G, N), Cm.view(Bsz, T, G, N), self.chunk, ssm)
            if ssm is not None:
                ssm.copy_(final)
        y = y + x.float() * self.D.float()[:, None]  # skip connection D·x per head
        y = self.norm(y.reshape(Bsz, T, self.d_inner).to(u.dtype), z)
        return self.out_proj(y)


class Mamba2Block(nn.Module):
    """Pre-norm residual block around the mixer alone: x + mixer(norm(x)) (Mamba-2 has no separate MLP)."""

    def __init__(self, config: KolmMamba2Config, layer_idx: int):
        super().__init__()
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.mixer = Mamba2Mixer(config, layer_idx)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, state: Any | None) -> torch.Tensor:
        return x + self.mixer(self.norm(x), mask, state)


# ----------------------------------------------------------------------------
# Shared Hugging Face plumbing


class KolmMamba2PreTrainedModel(PreTrainedModel):
    """Weight init, loading and saving conventions shared by every KolmMamba2 head."""

    config_class = KolmMamba2Config
    config: KolmMamba2Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Mamba2Block"]
    _is_stateful = True

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module (called by `init_weights()` and for weights missing from a checkpoint).

        * embeddings and linear layers: normal(0, init_std); `out_proj`, which
          writes into the residual stream, normal(0, init_std / sqrt(2 * n_layers));
        * conv1d: uniform(±1/sqrt(kernel)) (PyTorch's default bound for its
          fan-in), bias 0;
        * A_log = log(1..heads): heads decay at different rates, from slow to
          fast (S4D-real); D = 1 (the skip passes x through);
        * dt_bias = softplus⁻¹(Δ₀) with Δ₀ log-uniform in [dt_min, dt_max]
          (at least dt_floor), so heads start at different time scales;
        * RMSNorm gains (block, final, gated): 1.
        """
        c = self.config
        std = c.init_std
        if isinstance(module, nn.Linear):
            residual = getattr(module, "_kolm_residual_out", False)
            init.normal_(module.weight, mean=0.0, std=std / math.sqrt(2 * c.n_layers) if residual else std)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, (RMSNorm, GatedRMSNorm)):
            init.ones_(module.weight)
        elif isinstance(module, nn.Conv1d):
            bound = 1.0 / math.sqrt(module.kernel_size[0])
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, Mamba2Mixer):
            H = module.n_heads
            init.copy_(module.A_log, torch.log(torch.arange(1, H + 1, dtype=torch.float32)))
            init.ones_(module.D)
            log_lo, log_hi = math.log(c.dt_min), math.log(c.dt_max)
            dt = torch.exp(torch.rand(H) * (log_hi - log_lo) + log_lo).clamp(min=c.dt_floor)
            init.copy_(module.dt_bias, dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(Δ₀)


# ----------------------------------------------------------------------------
# Base model


class KolmMamba2Model(KolmMamba2PreTrainedModel):
    """Token embedding -> N Mamba-2 blocks -> final RMSNorm. Returns hidden states (B, T, C)."""

    def __init__(self, config: KolmMamba2Config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Mamba2Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
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
            raise ValueError("KolmMamba2 takes its own RecurrentState as cache (model.new_cache(...))")
        if state is None and use_cache and not self.training:
            state = self.new_state(B)
        mask = None
        if attention_mask is not None:
            if attention_mask.dim() != 2:
                raise ValueError("attention_mask must be 2-D (batch, past + new tokens): 1 for tokens, 0 for padding")
            if not bool(attention_mask[:, -T:].all()):
                mask = attention_mask[:, -T:]  # only the new tokens matter: the past is already in the state
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if checkpointing:
                x = self._gradient_checkpointing_func(layer.__call__, x, mask, state)
            else:
                x = layer(x, mask, state)
        if state is not None:
            state.advance(T)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(x), cache=state)

    def new_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> RecurrentState:
        """A zero state: per layer and row the last conv inputs (conv_dim, K-1) and the fp32 scan state (H, P, N)."""
        c = self.config
        p = self.embed_tokens.weight
        return RecurrentState(
            c.n_layers,
            batch_size,
            {"conv": (c.conv_dim, c.conv_kernel - 1), "ssm": (c.n_heads, c.head_dim, c.d_state)},
            device or p.device,
            dtype or p.dtype,
            dtypes={"ssm": torch.float32},
        )


# ----------------------------------------------------------------------------
# Heads


class KolmMamba2ForCausalLM(RecurrentGeneration, CausalLMHead, KolmMamba2PreTrainedModel, GenerationMixin):
    """KolmMamba2 with a next-token head; works with kolm's engine, PEFT and TRL."""

    base_model_class = KolmMamba2Model


class KolmMamba2ForSequenceClassification(SequenceClassifierHead, KolmMamba2PreTrainedModel):
    """KolmMamba2 with a linear `score` head on the last real token (the same head as KolmGPT's)."""

    base_model_class = KolmMamba2Model


# ----------------------------------------------------------------------------
# What the registry needs


def config_from_section(model_cfg: Any, **shared: Any) -> KolmMamba2Config:
    """KolmMamba2Config from a run's `model:` section (arch mamba2): `shared` fields + `model.mamba2`."""
    m = model_cfg.mamba2
    return KolmMamba2Config(
        **shared,
        d_state=m.d_state,
        head_dim=m.head_dim,
        expand=m.expand,
        n_groups=m.n_groups,
        conv_kernel=m.conv_kernel,
        chunk_size=m.chunk_size,
    )


def param_count(config: KolmMamba2Config) -> int:
    """Non-embedding parameters (a tied output head counts as the embedding)."""
    c = config
    d, H = c.d_model, c.n_heads
    in_proj = d * (c.d_inner + c.conv_dim + H)
    conv = c.conv_dim * c.conv_kernel + c.conv_dim
    per_layer = in_proj + conv + 3 * H + c.d_inner + c.d_inner * d + d  # + dt_bias, A_log, D; gated norm; out; norm
    return c.n_layers * per_layer + d + (0 if c.tie_word_embeddings else c.vocab_size * d)


def flops_per_token(config: KolmMamba2Config, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weights plus 3x the scan's forward cost.

    Per layer and token the chunked scan costs about H·(Q·(N + P)) inside a
    chunk of Q positions (C·Bᵀ and the weighted sum over x, causally halved)
    and 4·H·P·N for writing and reading the chunk states; the sequence length
    does not enter (that is the point of the architecture).
    """
    c = config
    Q = min(c.chunk_size, seq_len)
    scan = c.n_heads * (Q * (c.d_state + c.head_dim) + 4 * c.head_dim * c.d_state)
    return 6.0 * param_count(c) + 3.0 * c.n_layers * scan
