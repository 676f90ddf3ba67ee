"""KolmDeepseek: a DeepSeek-V3-style decoder (MLA attention, DeepSeekMoE feed-forward), as a Hugging Face model.

Read top-down like `gpt.py`: config -> base model -> causal LM head ->
classification head -> what the registry needs. The parts are `mla.MLA`
(attention with a latent cache) and `moe.MoE` (shared + routed experts);
each block is the same pre-norm `blocks.Block` KolmGPT uses, with the first
`first_k_dense` blocks keeping a dense SwiGLU (early layers route poorly).

Notable choices:

* Parameter names follow `DeepseekV3ForCausalLM`; the `hf` exporter
  (`kolm.export.hf_deepseek`) renames nothing but stacks the routed experts,
  and the exported model reproduces our logits. Routing is V3's sigmoid top-k
  without expert groups (`n_group = topk_group = 1` there); rotary dims use
  the half-split layout (`rope_interleave = False` there).
* The inference state is the same `KVCache` as KolmGPT's, holding per layer
  the latent `c` (kv_lora_rank) as "keys" and the shared rotary key
  (qk_rope_head_dim) as "values"; decoding attends against it directly
  (`MLA.absorb`).
* Training adds each MoE layer's sequence balance loss to the language-model
  loss when `aux_loss_alpha` > 0; the per-expert routing bias is moved by
  `update_router_bias()`, which the pretraining stage calls after every
  optimizer step and which returns the expert-load statistics it logs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast

from kolm.model_config import ModelConfigError
from kolm.models.blocks import Block, RMSNorm, Rotary, SwiGLU
from kolm.models.cache import KVCache
from kolm.models.gpt import _attention_mask, _position_ids_from_mask
from kolm.models.heads import CausalLMHead, SequenceClassifierHead
from kolm.models.mla import MLA
from kolm.models.moe import MoE, Router, load_stats

__all__ = [
    "KolmDeepseekConfig",
    "KolmDeepseekPreTrainedModel",
    "KolmDeepseekModel",
    "KolmDeepseekForCausalLM",
    "KolmDeepseekForSequenceClassification",
    "config_from_section",
    "flops_per_token",
]


# ----------------------------------------------------------------------------
# Config


class KolmDeepseekConfig(PretrainedConfig):
    """Shape of a KolmDeepseek model (saved as config.json, model_type "kolm_deepseek")."""

    model_type = "kolm_deepseek"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layers",
        "num_attention_heads": "n_heads",
        "intermediate_size": "ffn_dim",
        "max_position_embeddings": "max_seq_len",
        "rms_norm_eps": "norm_eps",
        "initializer_range": "init_std",
    }

    vocab_size: int = 32000
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    q_lora_rank: int = 0  # 0: queries projected directly (no low-rank compression)
    kv_lora_rank: int = 64
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16
    v_head_dim: int = 32
    ffn_dim: int = 384  # dense layers
    moe_ffn_dim: int = 96  # each expert
    n_routed_experts: int = 8
    n_shared_experts: int = 1
    num_experts_per_tok: int = 2  # routed experts per token (`model.deepseek.top_k`; `top_k` would be a sampling flag)
    first_k_dense: int = 1
    routed_scaling_factor: float = 1.0
    aux_loss_alpha: float = 0.0
    bias_update_rate: float = 1e-3
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
        if self.qk_rope_head_dim % 2:
            problems.append(f"qk_rope_head_dim {self.qk_rope_head_dim} must be even (rotary pairs)")
        if not 1 <= self.num_experts_per_tok <= self.n_routed_experts:
            problems.append(
                f"num_experts_per_tok {self.num_experts_per_tok} must be between 1 and "
                f"n_routed_experts {self.n_routed_experts}"
            )
        if problems:
            raise ModelConfigError("invalid KolmDeepseek config: " + "; ".join(problems))


# ----------------------------------------------------------------------------
# Shared Hugging Face plumbing


class KolmDeepseekPreTrainedModel(PreTrainedModel):
    """Weight init, loading and saving conventions shared by every KolmDeepseek head."""

    config_class = KolmDeepseekConfig
    config: KolmDeepseekConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Block"]
    _supports_sdpa = True
    _supports_attention_backend = False

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module (called by `init_weights()` and for weights missing from a checkpoint).

        * embeddings, every linear layer (experts included) and the router
          weight: normal(0, init_std);
        * the projections that write into the residual stream (`o_proj`, every
          `down_proj`): normal(0, init_std / sqrt(2 * n_layers)), as in KolmGPT;
        * the router's balancing bias: 0 (every expert starts equal);
        * RMSNorm gains (block norms and the latent norms inside MLA): 1. No biases.
        """
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            residual = getattr(module, "_kolm_residual_out", False)
            init.normal_(module.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layers) if residual else std)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, Router):
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.e_score_correction_bias)


# ----------------------------------------------------------------------------
# Base model


class KolmDeepseekModel(KolmDeepseekPreTrainedModel):
    """Token embedding -> N blocks (MLA + dense SwiGLU or MoE) -> final RMSNorm. Returns hidden states (B, T, C)."""

    def __init__(self, config: KolmDeepseekConfig):
        super().__init__(config)
        c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.layers = nn.ModuleList(
            Block(
                c.d_model,
                MLA(
                    c.d_model,
                    c.n_heads,
                    c.q_lora_rank,
                    c.kv_lora_rank,
                    c.qk_nope_head_dim,
                    c.qk_rope_head_dim,
                    c.v_head_dim,
                    layer_idx=i,
                ),
                SwiGLU(c.d_model, c.ffn_dim)
                if i < c.first_k_dense
                else MoE(
                    c.d_model,
                    c.moe_ffn_dim,
                    c.n_routed_experts,
                    c.n_shared_experts,
                    c.num_experts_per_tok,
                    c.routed_scaling_factor,
                    c.aux_loss_alpha,
                ),
                c.norm_eps,
            )
            for i in range(c.n_layers)
        )
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        self.rotary = Rotary(c.qk_rope_head_dim, c.max_seq_len, c.rope_theta)  # only the decoupled rope dims
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def moe_layers(self) -> list[MoE]:
        """The MoE feed-forward layers, in depth order."""
        return [layer.mlp for layer in self.layers if isinstance(layer.mlp, MoE)]

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
        T = x.shape[1]
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
        cos, sin = self.rotary(x, past, T, position_ids)
        mask = _attention_mask(attention_mask, past, T, x.device)
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if checkpointing:
                x = self._gradient_checkpointing_func(layer.__call__, x, cos, sin, mask, cache)
            else:
                x = layer(x, cos, sin, mask, cache)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(x), cache=cache)


# ----------------------------------------------------------------------------
# Heads


class KolmDeepseekForCausalLM(CausalLMHead, KolmDeepseekPreTrainedModel, GenerationMixin):
    """KolmDeepseek with a next-token head (`heads.CausalLMHead`); works with `generate()`, pipelines, PEFT and TRL."""

    base_model_class = KolmDeepseekModel

    def new_cache(
        self, batch_size: int, max_len: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty latent cache: per layer and token, kv_lora_rank latent values plus qk_rope_head_dim rotary key."""
        c = self.config
        p = self.model.embed_tokens.weight  # not the head's: an int8 weight-only head has no float weight
        return KVCache(
            c.n_layers,
            batch_size,
            1,
            c.kv_lora_rank,
            max_len,
            device or p.device,
            dtype or p.dtype,
            value_dim=c.qk_rope_head_dim,
        )

    def update_router_bias(self) -> dict[str, float]:
        """After an optimizer step: move every MoE layer's balancing bias toward equal load; return load statistics
        (`expert_load_min`, `expert_load_max`, `expert_load_entropy`) of the tokens routed since the last call."""
        rate = self.config.bias_update_rate
        loads = [load for moe in self.model.moe_layers() if (load := moe.update_bias(rate)) is not None]
        return load_stats(loads)

    def extra_loss(self) -> torch.Tensor | None:
        """The MoE sequence-level balance loss while training (when `aux_loss_alpha` > 0), else None."""
        if not self.training:
            return None
        losses = [moe.aux_loss for moe in self.model.moe_layers() if moe.aux_loss is not None]
        return sum(losses) if losses else None


class KolmDeepseekForSequenceClassification(SequenceClassifierHead, KolmDeepseekPreTrainedModel):
    """KolmDeepseek with a linear `score` head on the last real token (the same head as KolmGPT's)."""

    base_model_class = KolmDeepseekModel


# ----------------------------------------------------------------------------
# What the registry needs


def config_from_section(model_cfg: Any, **shared: Any) -> KolmDeepseekConfig:
    """KolmDeepseekConfig from a run's `model:` section (arch deepseek): `shared` fields + `model.deepseek`."""
    ds = model_cfg.deepseek
    return KolmDeepseekConfig(
        **shared,
        n_heads=ds.n_heads,
        q_lora_rank=ds.q_lora_rank,
        kv_lora_rank=ds.kv_lora_rank,
        qk_nope_head_dim=ds.qk_nope_head_dim,
        qk_rope_head_dim=ds.qk_rope_head_dim,
        v_head_dim=ds.v_head_dim,
        ffn_dim=ds.ffn_dim,
        moe_ffn_dim=ds.moe_ffn_dim,
        n_routed_experts=ds.n_routed_experts,
        n_shared_experts=ds.n_shared_experts,
        num_experts_per_tok=ds.top_k,
        first_k_dense=ds.first_k_dense,
        routed_scaling_factor=ds.routed_scaling_factor,
        aux_loss_alpha=ds.aux_loss_alpha,
        bias_update_rate=ds.bias_update_rate,
        rope_theta=ds.rope_theta,
    )


def param_counts(config: KolmDeepseekConfig) -> tuple[int, int]:
    """(total, active) non-embedding parameters: active counts the shared and the top_k routed experts only."""
    c = config
    d, H = c.d_model, c.n_heads
    qk = c.qk_nope_head_dim + c.qk_rope_head_dim
    q = d * c.q_lora_rank + c.q_lora_rank + c.q_lora_rank * H * qk if c.q_lora_rank else d * H * qk
    kv = (
        d * (c.kv_lora_rank + c.qk_rope_head_dim)
        + c.kv_lora_rank
        + c.kv_lora_rank * H * (c.qk_nope_head_dim + c.v_head_dim)
    )
    attn = q + kv + H * c.v_head_dim * d + 2 * d  # + o_proj, two block norms
    expert = 3 * d * c.moe_ffn_dim
    dense_layers = min(c.first_k_dense, c.n_layers)
    moe_layers = c.n_layers - dense_layers
    shared = c.n_routed_experts * d + c.n_shared_experts * expert  # router + shared experts
    total = c.n_layers * attn + dense_layers * 3 * d * c.ffn_dim + moe_layers * (shared + c.n_routed_experts * expert)
    active = (
        c.n_layers * attn + dense_layers * 3 * d * c.ffn_dim + moe_layers * (shared + c.num_experts_per_tok * expert)
    )
    head = d + (0 if c.tie_word_embeddings else c.vocab_size * d)  # final norm, untied head
    return total + head, active + head


def flops_per_token(config: KolmDeepseekConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x active parameters, plus attention scores at 3·L·T·H·(d_qk + d_v).

    Only the routed experts a token is sent to count (MoE's point). Attention:
    forward QKᵀ and AV cost 2·T·H·d_qk and 2·T·H·d_v per token and layer,
    backward doubles it, the causal mask halves it (as in KolmGPT).
    """
    c = config
    _, active = param_counts(c)
    qk = c.qk_nope_head_dim + c.qk_rope_head_dim
    return 6.0 * active + 3.0 * c.n_layers * seq_len * c.n_heads * (qk + c.v_head_dim)
