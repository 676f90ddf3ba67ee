"""`hf` for KolmMamba2: the model as a plain `Mamba2ForCausalLM` dir that loads without kolm.

KolmMamba2 computes what `transformers`' Mamba2 computes with the same
tensors; only three prefixes differ (`model.embed_tokens` ->
`backbone.embeddings`, `model.layers` -> `backbone.layers`, `model.norm` ->
`backbone.norm_f`). The loaded model reproduces our logits
(tests/models/test_models_mamba2.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kolm.export.hf_common import build_hf_model, write_hf_export

__all__ = ["mamba2_config", "to_hf_state", "to_mamba2", "export_hf_mamba2"]

_PREFIXES = (("model.embed_tokens.", "backbone.embeddings."), ("model.layers.", "backbone.layers."))
_RENAMES = {"model.norm.weight": "backbone.norm_f.weight"}


def mamba2_config(config: Any) -> dict[str, Any]:
    """`Mamba2Config` keyword arguments equivalent to a KolmMamba2Config."""
    return dict(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        num_hidden_layers=config.n_layers,
        num_heads=config.n_heads,
        head_dim=config.head_dim,
        state_size=config.d_state,
        expand=config.expand,
        n_groups=config.n_groups,
        conv_kernel=config.conv_kernel,
        chunk_size=config.chunk_size,
        use_bias=False,
        use_conv_bias=True,
        hidden_act="silu",
        residual_in_fp32=True,
        layer_norm_epsilon=config.norm_eps,
        time_step_min=config.dt_min,
        time_step_max=config.dt_max,
        time_step_floor=config.dt_floor,
        time_step_limit=(0.0, float("inf")),
        initializer_range=config.init_std,
        tie_word_embeddings=bool(config.tie_word_embeddings),
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


def to_hf_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> Mamba2's: the same tensors under `backbone.` names."""
    out = {}
    for name, tensor in state.items():
        new = _RENAMES.get(name, name)
        for ours, theirs in _PREFIXES:
            if new.startswith(ours):
                new = theirs + new[len(ours) :]
        out[new] = tensor
    return out


def to_mamba2(model: Any) -> Any:
    """A `Mamba2ForCausalLM` holding copies of a KolmMamba2 causal LM's weights, in the same dtype."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    state = to_hf_state({k: v.detach().clone() for k, v in model.state_dict().items()})
    return build_hf_model(model, Mamba2ForCausalLM, Mamba2Config(**mamba2_config(model.config)), state, "Mamba2")


def export_hf_mamba2(
    model_dir: str | Path, out_dir: str | Path, *, quant: str | None = None, dtype: str | None = None
) -> Path:
    """Write `model_dir` (a KolmMamba2 causal LM with its tokenizer) as a vanilla Mamba2 dir at `out_dir`."""
    from kolm.models.mamba2 import KolmMamba2Config

    return write_hf_export(
        model_dir,
        out_dir,
        model_type=KolmMamba2Config.model_type,
        convert=to_mamba2,
        fmt="hf",
        quant=quant,
        dtype=dtype,
    )
