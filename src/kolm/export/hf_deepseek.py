"""`hf` for KolmDeepseek: the model as a plain `DeepseekV3ForCausalLM` dir that loads without kolm.

KolmDeepseek already uses DeepseekV3's parameter names; the one difference
is that our routed experts are separate SwiGLU modules and `transformers`
keeps them stacked, per layer, as `experts.gate_up_proj` (E, 2F, C) and
`experts.down_proj` (E, C, F). The config sets V3's options to what kolm
computes: no expert groups (`n_group = topk_group = 1`), half-split rotary
(`rope_interleave = False`), no multi-token prediction layers. The loaded
model reproduces our logits (tests/models/test_models_deepseek.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from kolm.export.hf_common import build_hf_model, write_hf_export

__all__ = ["deepseek_v3_config", "to_hf_state", "to_deepseek_v3", "export_hf_deepseek"]


def deepseek_v3_config(config: Any) -> dict[str, Any]:
    """`DeepseekV3Config` keyword arguments equivalent to a KolmDeepseekConfig."""
    return dict(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.ffn_dim,
        moe_intermediate_size=config.moe_ffn_dim,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        n_shared_experts=config.n_shared_experts,
        n_routed_experts=config.n_routed_experts,
        num_experts_per_tok=config.num_experts_per_tok,
        routed_scaling_factor=float(config.routed_scaling_factor),
        kv_lora_rank=config.kv_lora_rank,
        q_lora_rank=config.q_lora_rank or None,
        qk_rope_head_dim=config.qk_rope_head_dim,
        qk_nope_head_dim=config.qk_nope_head_dim,
        v_head_dim=config.v_head_dim,
        n_group=1,
        topk_group=1,
        first_k_dense_replace=config.first_k_dense,
        norm_topk_prob=True,
        hidden_act="silu",
        max_position_embeddings=config.max_seq_len,
        initializer_range=config.init_std,
        rms_norm_eps=config.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_theta)},
        rope_interleave=False,
        attention_bias=False,
        num_nextn_predict_layers=0,
        tie_word_embeddings=bool(config.tie_word_embeddings),
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


_EXPERT = re.compile(r"^(model\.layers\.\d+\.mlp)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


def to_hf_state(state: dict[str, torch.Tensor], n_experts: int) -> dict[str, torch.Tensor]:
    """Our state dict -> DeepseekV3's: every name kept, except the routed experts, stacked per layer."""
    out: dict[str, torch.Tensor] = {}
    experts: dict[str, dict[str, list[torch.Tensor | None]]] = {}
    for name, tensor in state.items():
        m = _EXPERT.match(name)
        if m is None:
            out[name] = tensor
            continue
        layer, e, part = m.group(1), int(m.group(2)), m.group(3)
        experts.setdefault(layer, {p: [None] * n_experts for p in ("gate_proj", "up_proj", "down_proj")})[part][e] = (
            tensor
        )
    for layer, parts in experts.items():
        # Per expert: gate (F, C) over up (F, C) -> gate_up (2F, C); stacked over experts -> (E, 2F, C).
        gate_up = [torch.cat([g, u], dim=0) for g, u in zip(parts["gate_proj"], parts["up_proj"])]
        out[f"{layer}.experts.gate_up_proj"] = torch.stack(gate_up)
        out[f"{layer}.experts.down_proj"] = torch.stack(parts["down_proj"])  # (E, C, F)
    return out


def to_deepseek_v3(model: Any) -> Any:
    """A `DeepseekV3ForCausalLM` holding copies of a KolmDeepseek causal LM's weights, in the same dtype."""
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    state = to_hf_state({k: v.detach().clone() for k, v in model.state_dict().items()}, model.config.n_routed_experts)
    config = DeepseekV3Config(**deepseek_v3_config(model.config))
    return build_hf_model(model, DeepseekV3ForCausalLM, config, state, "DeepseekV3")


def export_hf_deepseek(
    model_dir: str | Path, out_dir: str | Path, *, quant: str | None = None, dtype: str | None = None
) -> Path:
    """Write `model_dir` (a KolmDeepseek causal LM with its tokenizer) as a vanilla DeepseekV3 dir at `out_dir`."""
    from kolm.models.deepseek import KolmDeepseekConfig

    return write_hf_export(
        model_dir,
        out_dir,
        model_type=KolmDeepseekConfig.model_type,
        convert=to_deepseek_v3,
        fmt="hf",
        quant=quant,
        dtype=dtype,
    )
