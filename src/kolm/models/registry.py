"""Architecture name -> config/model classes, and registration with `transformers.Auto*`.

Importing this module registers model_type "kolm_gpt" with `AutoConfig`,
`AutoModelForCausalLM` and `AutoModelForSequenceClassification` (idempotent),
so `AutoModelForCausalLM.from_pretrained(dir)` loads kolm checkpoints. Every
kolm code path that loads a model imports it first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from kolm.errors import CheckpointError
from kolm.models.gpt import (
    KolmGPTConfig,
    KolmGPTForCausalLM,
    KolmGPTForSequenceClassification,
    KolmGPTModel,
    build_on_meta,
)

__all__ = [
    "ARCHITECTURES",
    "KolmGPTConfig",
    "KolmGPTForCausalLM",
    "KolmGPTForSequenceClassification",
    "KolmGPTModel",
    "register",
    "gpt_config_from_run",
    "build_causal_lm",
    "load_causal_lm",
]

# `model.arch` -> (config class, causal LM class, sequence classifier class)
ARCHITECTURES: dict[str, tuple[type, type, type]] = {
    "gpt": (KolmGPTConfig, KolmGPTForCausalLM, KolmGPTForSequenceClassification),
}


def register() -> None:
    """Register kolm architectures with the Auto classes (safe to call repeatedly)."""
    for config_cls, causal_cls, seq_cls in ARCHITECTURES.values():
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModelForCausalLM.register(config_cls, causal_cls, exist_ok=True)
        AutoModelForSequenceClassification.register(config_cls, seq_cls, exist_ok=True)


register()


def gpt_config_from_run(model_cfg: Any, vocab_size: int, bos_token_id: int | None = None,
                        eos_token_id: int | None = None, pad_token_id: int | None = None) -> KolmGPTConfig:
    """KolmGPTConfig from the run config's `model:` section plus the tokenizer's vocabulary and special ids."""
    config_cls = ARCHITECTURES[model_cfg.arch][0]
    return config_cls(
        vocab_size=vocab_size,
        d_model=model_cfg.d_model,
        n_layers=model_cfg.n_layers,
        n_heads=model_cfg.n_heads,
        n_kv_heads=model_cfg.n_kv_heads,
        ffn_dim=model_cfg.ffn_dim,
        max_seq_len=model_cfg.max_seq_len,
        rope_theta=model_cfg.rope_theta,
        norm_eps=model_cfg.norm_eps,
        init_std=model_cfg.init_std,
        tie_word_embeddings=model_cfg.tie_embeddings,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def build_causal_lm(model_cfg: Any, vocab_size: int, bos_id: int | None = None, eos_id: int | None = None,
                    pad_id: int | None = None, device: str | torch.device = "cpu") -> KolmGPTForCausalLM:
    """A freshly initialised causal LM for the `model:` section (built on meta, materialised on `device`)."""
    config = gpt_config_from_run(model_cfg, vocab_size, bos_id, eos_id, pad_id)
    return build_on_meta(config, device, ARCHITECTURES[model_cfg.arch][1])


def load_causal_lm(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Any:
    """`AutoModelForCausalLM.from_pretrained(path)` in eval mode on `device`, with a clear error for a bad dir."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise CheckpointError(f"no model at {path} (config.json missing); pass a model dir such as runs/<name>/pretrain/final")
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return model.to(device).eval()
