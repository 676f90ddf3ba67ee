"""KolmGPT: a Llama-style decoder-only Transformer, packaged as a Hugging Face model.

Read top-down: config -> base model (embedding, blocks, final norm) -> causal
LM head -> sequence-classification head -> what the registry needs (the HF
config from a run's `model:` section, FLOPs per token). The parts live in
`blocks.py`; the base model composes each block from an `Attention` and a
`SwiGLU`.

Notable choices:

* Parameter names match `LlamaForCausalLM` (`model.embed_tokens`,
  `model.layers.N.self_attn.q_proj`, ..., `lm_head`), so PEFT's standard target
  names work and the hf-llama export copies tensors unchanged.
* Our own field names (`d_model`, `n_layers`, ...) are mapped to the names the
  `transformers` machinery reads (`hidden_size`, `num_hidden_layers`, ...)
  through `attribute_map`; `generate()`'s `DynamicCache` needs
  `num_hidden_layers`.
* `forward` takes an explicit inference-state object (`cache=`; also accepted
  as `past_key_values=`): our preallocated `KVCache` from the engine, or the
  `DynamicCache` that `generate()` builds. Left padding works through
  `attention_mask` (+ `position_ids`, derived from the mask when absent).
* Loss shifts the labels, not the logits (no (B, T, V) copy). Asked for the
  loss alone (`skip_logits=True`, as the training loop does), the LM head
  and cross-entropy run in row chunks with their gradients formed on the way
  (`lm_head_loss`): no (B, T, V) logits at all, which matters as the
  vocabulary grows.
* `decode_step` is one generation step with every shape fixed (the cache
  written at a position tensor, attention masked over the whole buffer), so
  the engine can run it compiled (`Engine(compile=True)`).
* Fresh models for training are built on the meta device and initialised
  once (`kolm.models.registry.build_causal_lm`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from kolm.model_config import ModelConfigError
from kolm.models.blocks import Attention, Block, RMSNorm, Rotary, SwiGLU
from kolm.models.cache import ColumnWriter, KVCache
from kolm.models.heads import CausalLMHead, SequenceClassifierHead

__all__ = [
    "KolmGPTConfig",
    "KolmGPTPreTrainedModel",
    "KolmGPTModel",
    "KolmGPTForCausalLM",
    "KolmGPTForSequenceClassification",
    "config_from_section",
    "flops_per_token",
    "lm_head_loss",
]


# ----------------------------------------------------------------------------
# Config


class KolmGPTConfig(PretrainedConfig):
    """Shape of a KolmGPT model (saved as config.json, model_type "kolm_gpt")."""

    model_type = "kolm_gpt"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layers",
        "num_attention_heads": "n_heads",
        "num_key_value_heads": "n_kv_heads",
        "intermediate_size": "ffn_dim",
        "max_position_embeddings": "max_seq_len",
        "rms_norm_eps": "norm_eps",
        "initializer_range": "init_std",
    }

    vocab_size: int = 32000
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 384
    max_seq_len: int = 256
    rope_theta: float = 10000.0
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
        if self.d_model % self.n_heads:
            problems.append(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        elif (self.d_model // self.n_heads) % 2:
            problems.append(f"head size d_model/n_heads = {self.d_model // self.n_heads} must be even (rotary pairs)")
        if self.n_heads % self.n_kv_heads:
            problems.append(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if problems:
            raise ModelConfigError("invalid KolmGPT config: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# ----------------------------------------------------------------------------
# Shared Hugging Face plumbing


class KolmGPTPreTrainedModel(PreTrainedModel):
    """Weight init, loading and saving conventions shared by every KolmGPT head."""

    config_class = KolmGPTConfig
    config: KolmGPTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True  # activation checkpointing per block (TRL's SFT default)
    _no_split_modules = ["Block"]
    _supports_sdpa = True
    _supports_attention_backend = False

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module (called by `init_weights()` and for weights missing from a checkpoint).

        * embeddings and every linear layer: normal(0, init_std);
        * the two projections that write into the residual stream (`o_proj`,
          `down_proj`): normal(0, init_std / sqrt(2 * n_layers)), so the
          residual's variance does not grow with depth (GPT-2);
        * RMSNorm gains: 1. There are no biases.
        """
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            residual = getattr(module, "_kolm_residual_out", False)
            init.normal_(module.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layers) if residual else std)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)


# ----------------------------------------------------------------------------
# Base model


def _position_ids_from_mask(attention_mask: torch.Tensor, past: int, length: int) -> torch.Tensor:
    """Positions counting only real tokens, so left padding does not shift them. (B, T)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)[:, past : past + length]


def _attention_mask(
    attention_mask: torch.Tensor | None, past: int, length: int, device: torch.device
) -> torch.Tensor | None:
    """Bool (B, 1, T, past+T) mask from a 2-D padding mask, or None when plain causal attention suffices."""
    if attention_mask is None or bool(attention_mask.all()):
        if length == 1 or past == 0:
            return None  # decode step sees every key; prefill is plain causal (SDPA is_causal)
        q = torch.arange(past, past + length, device=device)
        return (torch.arange(past + length, device=device)[None, :] <= q[:, None])[None, None]
    keys = attention_mask.bool()[:, None, None, : past + length]  # (B, 1, 1, Tk)
    q = torch.arange(past, past + length, device=device)[:, None]  # (T, 1) absolute query positions
    k = torch.arange(past + length, device=device)[None, :]  # (1, Tk)
    mask = keys & (k <= q)  # (B, 1, T, Tk)
    # A padding query sees no key at all; let it see itself so SDPA returns numbers, not NaN.
    return mask | ((k == q) & ~mask.any(-1, keepdim=True))


class KolmGPTModel(KolmGPTPreTrainedModel):
    """Token embedding -> N blocks -> final RMSNorm. Returns hidden states (B, T, C)."""

    def __init__(self, config: KolmGPTConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(
            Block(
                config.d_model,
                Attention(config.d_model, config.n_heads, config.n_kv_heads, layer_idx=i),
                SwiGLU(config.d_model, config.ffn_dim),
                config.norm_eps,
            )
            for i in range(config.n_layers)
        )
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.rotary = Rotary(config.head_dim, config.max_seq_len, config.rope_theta)
        self.gradient_checkpointing = False  # set by activation_checkpointing_enable()
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
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
        cache = cache if cache is not None else past_key_values
        if cache is None and use_cache and not self.training:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.config)
        past = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError("attention_mask must be 2-D (batch, past + new tokens): 1 for tokens, 0 for padding")
        if position_ids is None and attention_mask is not None and not bool(attention_mask.all()):
            position_ids = _position_ids_from_mask(attention_mask, past, T)
        if position_ids is not None and position_ids.dim() == 1:
            position_ids = position_ids[None]
        if (
            position_ids is not None
            and bool((position_ids[:, :1] == past).all())
            and bool((position_ids == position_ids[:1]).all())
        ):
            # Contiguous positions shared by the batch: slice the table instead of gathering.
            if bool((position_ids[0] == torch.arange(past, past + T, device=position_ids.device)).all()):
                position_ids = None
        cos, sin = self.rotary(x, past, T, position_ids)
        mask = _attention_mask(attention_mask, past, T, x.device)
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if checkpointing:  # recompute the block's activations in backward instead of storing them
                x = self._gradient_checkpointing_func(layer.__call__, x, cos, sin, mask, cache)
            else:
                x = layer(x, cos, sin, mask, cache)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(x), cache=cache)


# ----------------------------------------------------------------------------
# Heads


class _LMHeadLoss(torch.autograd.Function):
    """Mean next-token cross-entropy of h @ weightᵀ, computed in row chunks; never holds (N, V) logits.

    The backward of softmax cross-entropy is known in closed form (softmax -
    one-hot), so each chunk's gradients are computed in the forward while its
    logits are at hand, and `backward` only scales them: no recomputation, no
    (N, V) float copy, zero-filled gradient or log-softmax buffer as in the
    plain path. `dtype` is the matmul precision (bf16 under autocast);
    softmax and the loss are fp32.
    """

    @staticmethod
    def forward(ctx, h, weight, targets, rows, dtype, num_items):  # h (N, C), weight (V, C), targets (N,)
        need_h, need_w = ctx.needs_input_grad[:2]
        hc, wc = h.to(dtype), weight.to(dtype)
        valid = targets != -100  # (N,)
        safe = targets.clamp(min=0)[:, None]  # (N, 1) gather index; ignored rows are masked out
        total = torch.zeros((), device=h.device, dtype=torch.float32)
        grad_h = torch.empty_like(hc) if need_h else None
        grad_w = torch.zeros(weight.shape, device=h.device, dtype=torch.float32) if need_w else None
        for s in range(0, h.shape[0], rows):
            e = min(s + rows, h.shape[0])
            logits = (hc[s:e] @ wc.T).float()  # (n, V)
            lse = logits.logsumexp(-1)  # (n,)
            keep = valid[s:e]
            total += ((lse - logits.gather(1, safe[s:e]).squeeze(1)) * keep).sum()
            if need_h or need_w:
                d = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                d.scatter_add_(1, safe[s:e], -keep[:, None].float())  # - one-hot of the target
                d = d.mul_(keep[:, None]).to(dtype)  # ignored positions get no gradient
                if need_h:
                    torch.mm(d, wc, out=grad_h[s:e])  # (n, C)
                if need_w:
                    grad_w += d.T @ hc[s:e]  # (V, C), accumulated in fp32
        n = valid.sum() if num_items is None else torch.as_tensor(num_items, device=h.device)
        ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None), n)
        ctx.have = (need_h, need_w)
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        saved = list(ctx.saved_tensors)
        scale = grad_out / saved.pop()
        grads = [saved.pop(0) * scale if need else None for need in ctx.have]
        return grads[0], grads[1], None, None, None, None


def lm_head_loss(
    h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token loss of hidden states h (B, T, C) through an output matrix (V, C), labels (B, T) unshifted.

    Equals `heads.causal_lm_loss(h @ weight.T, labels, num_items)`; see
    `_LMHeadLoss` for how. Chunks hold about 2^24 logits (64 MB in fp32).
    """
    targets = F.pad(labels[:, 1:], (0, 1), value=-100).to(h.device).reshape(-1)  # (B*T,)
    dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else h.dtype
    rows = max(1, 2**24 // weight.shape[0])
    return _LMHeadLoss.apply(h.reshape(-1, h.shape[-1]), weight, targets, rows, dtype, num_items)


class KolmGPTForCausalLM(CausalLMHead, KolmGPTPreTrainedModel, GenerationMixin):
    """KolmGPT with a next-token head (`heads.CausalLMHead`); works with `generate()`, pipelines, PEFT and TRL.

    `model(..., labels=..., skip_logits=True)` returns the loss alone (logits
    None) through `lm_head_loss`, which never materialises (B, T, V) logits:
    the training loop asks for it when it only needs the loss.
    """

    base_model_class = KolmGPTModel

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Any | None = None,
        return_dict: bool | None = None,
        skip_logits: bool = False,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """As `CausalLMHead.forward`; with `skip_logits=True` and labels, the loss alone (`logits` None)."""
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        inputs.update(inputs_embeds=inputs_embeds, use_cache=use_cache)
        cache = cache if cache is not None else past_key_values
        if not skip_logits or labels is None or type(self.lm_head) is not nn.Linear:
            return super().forward(**inputs, cache=cache, labels=labels, logits_to_keep=logits_to_keep, **kwargs)
        out = self.model(**inputs, cache=cache)
        loss = lm_head_loss(out.last_hidden_state, self.lm_head.weight, labels, kwargs.get("num_items_in_batch"))
        return CausalLMOutputWithPast(loss=loss, logits=None, cache=out.cache)

    def new_cache(
        self, batch_size: int, max_len: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty preallocated inference state for `batch_size` rows of up to `max_len` tokens."""
        c = self.config
        p = self.model.embed_tokens.weight  # not the head's: an int8 weight-only head has no float weight
        return KVCache(c.n_layers, batch_size, c.n_kv_heads, c.head_dim, max_len, device or p.device, dtype or p.dtype)

    def decode_step(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        column: torch.Tensor,
        keys: torch.Tensor,
        cache: KVCache,
    ) -> torch.Tensor:
        """One token per row against a prefilled `cache`, with every shape fixed: next-token logits (B, V).

        input_ids, position_ids: (B, 1) (rotary positions, per row under left
        padding); column: () long, the cache column this token is written to
        (the same for every row); keys: bool (B, max_len), the columns each row
        may attend to apart from the not-yet-written ones. No Python branches
        on values and no shape that grows, so `torch.compile` traces it once
        per (batch, cache size) and the engine can run it compiled.
        """
        p = self.model.embed_tokens.weight
        cos, sin = self.model.rotary.tables(p.device, p.dtype)
        cos, sin = cos[position_ids].unsqueeze(2), sin[position_ids].unsqueeze(2)  # (B, 1, 1, D)
        written = torch.arange(keys.shape[1], device=keys.device) <= column  # (max_len,)
        mask = (keys & written)[:, None, None, :]  # (B, 1, 1, max_len)
        writer = ColumnWriter(cache, column)
        x = self.model.embed_tokens(input_ids)  # (B, 1, C)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, writer)
        return self.lm_head(self.model.norm(x))[:, -1]  # (B, V)


class KolmGPTForSequenceClassification(SequenceClassifierHead, KolmGPTPreTrainedModel):
    """KolmGPT with a linear `score` head on the last real token (`heads.SequenceClassifierHead`)."""

    base_model_class = KolmGPTModel


# ----------------------------------------------------------------------------
# What the registry needs


def config_from_section(model_cfg: Any, **shared: Any) -> KolmGPTConfig:
    """KolmGPTConfig from a run's `model:` section (arch gpt): `shared` fields (`registry.hf_config`) + `model.gpt`."""
    gpt = model_cfg.gpt
    return KolmGPTConfig(
        **shared,
        n_heads=gpt.n_heads,
        n_kv_heads=gpt.n_kv_heads,
        ffn_dim=gpt.ffn_dim,
        rope_theta=gpt.rope_theta,
    )


def flops_per_token(config: KolmGPTConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls with weights, plus 6·L·T·d for attention scores.

    N counts the non-embedding parameters (a tied output head counts as the
    embedding). Forward QKᵀ and AV cost 2·2·T·d per layer per token with
    causal masking ignored; backward doubles that: 12·L·T·d, halved for the
    causal mask.
    """
    d, L, kv = config.d_model, config.n_layers, config.n_kv_heads * config.head_dim
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * config.ffn_dim + 2 * d  # q, o; k, v; gate, up, down; two norms
    n_params = L * per_layer + d + (0 if config.tie_word_embeddings else config.vocab_size * d)  # + final norm, head
    return 6.0 * n_params + 6.0 * L * seq_len * d
