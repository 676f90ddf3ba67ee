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
import shutil
from pathlib import Path
from typing import Any

import torch

from kolm.errors import CheckpointError, KolmError
from kolm.export.hf_llama import TOKENIZER_FILES

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

    config = DeepseekV3Config(**deepseek_v3_config(model.config))
    with torch.device("meta"):
        hf = DeepseekV3ForCausalLM(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = to_hf_state(state, model.config.n_routed_experts)
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise KolmError(f"weights do not map onto DeepseekV3: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    # The rotary tables are buffers, not weights: still on meta, so built again on the CPU (never saved).
    hf.model.rotary_emb = type(hf.model.rotary_emb)(hf.config)
    hf = hf.to(model.lm_head.weight.dtype)
    if model.generation_config is not None:
        hf.generation_config = model.generation_config
    return hf


def export_hf_deepseek(
    model_dir: str | Path, out_dir: str | Path, *, quant: str | None = None, dtype: str | None = None
) -> Path:
    """Write `model_dir` (a KolmDeepseek causal LM with its tokenizer) as a vanilla DeepseekV3 dir at `out_dir`."""
    if quant not in (None, "none"):
        raise KolmError(f"hf export writes unquantized weights (quant {quant!r})")
    from transformers import AutoConfig

    from kolm.models.deepseek import KolmDeepseekConfig
    from kolm.models.loading import load_model

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").exists():
        raise CheckpointError(f"no model at {model_dir} (config.json missing); pass --model runs/<name>/pretrain/final")
    model_type = AutoConfig.from_pretrained(model_dir).model_type
    if model_type != KolmDeepseekConfig.model_type:
        raise KolmError(
            f"{model_dir} holds a {model_type!r} model; this export needs a {KolmDeepseekConfig.model_type}"
        )
    ours, _ = load_model(model_dir, device="cpu", dtype=dtype)
    hf = to_deepseek_v3(ours)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)
    return out_dir
