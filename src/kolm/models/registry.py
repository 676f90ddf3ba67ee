"""Architecture name -> everything kolm needs to know about it, and registration with `transformers.Auto*`.

One `Arch` entry per architecture: its Hugging Face config class and heads,
how a run's `model:` section becomes that config, its training FLOPs per
token, the export formats that apply to it and its LoRA target modules. Code
that depends on the architecture asks this table (`get_arch` by `model.arch`,
`arch_of` by a loaded model's config) instead of naming a model class, so a
new architecture is its module, its `model.<arch>` subsection
(`kolm.model_config`) and one entry here.

Importing this module registers every architecture's model_type with
`AutoConfig`, `AutoModelForCausalLM` and `AutoModelForSequenceClassification`
(idempotent), so `AutoModelForCausalLM.from_pretrained(dir)` loads kolm
model dirs; `import kolm.models` does it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from kolm.errors import ConfigError, KolmError
from kolm.models import deepseek, gpt, mamba2, rwkv7

__all__ = [
    "Arch",
    "ARCHS",
    "register",
    "get_arch",
    "arch_of",
    "hf_config",
    "build_causal_lm",
    "build_on_meta",
    "flops_per_token",
    "lora_targets",
]


@dataclass(frozen=True)
class Arch:
    """What kolm knows about one architecture."""

    name: str  # the value of `model.arch`
    config_class: type[PretrainedConfig]
    causal_lm: type[PreTrainedModel]
    classifier: type[PreTrainedModel]
    # (model_cfg, **shared fields filled by `hf_config` below) -> HF config
    hf_config: Callable[..., PretrainedConfig]
    # (HF config, sequence length) -> training FLOPs per token
    flops_per_token: Callable[[Any, int], float]
    # format name -> "module:function" with signature (model_dir, out_dir, *, quant, dtype) -> out_dir; imported when used,
    # so the model layer does not import kolm.export
    exporters: Mapping[str, str]
    lora_targets: tuple[str, ...]  # module names PEFT's LoRA adapts by default

    @property
    def model_type(self) -> str:
        """`model_type` in the config.json of this architecture's model dirs."""
        return self.config_class.model_type

    def exporter(self, fmt: str) -> Callable[..., Path]:
        """The export function for format `fmt` (one of `self.exporters`)."""
        module, _, name = self.exporters[fmt].partition(":")
        return getattr(importlib.import_module(module), name)


ARCHS: dict[str, Arch] = {
    "gpt": Arch(
        name="gpt",
        config_class=gpt.KolmGPTConfig,
        causal_lm=gpt.KolmGPTForCausalLM,
        classifier=gpt.KolmGPTForSequenceClassification,
        hf_config=gpt.config_from_section,
        flops_per_token=gpt.flops_per_token,
        exporters={
            "hf-llama": "kolm.export.hf_llama:export_hf_llama",
            "hf": "kolm.export.hf_llama:export_hf_llama",  # transformers has GPT as Llama
            "gguf": "kolm.export.gguf:export_gguf",
            "onnx": "kolm.export.onnx:export_onnx",
        },
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ),
    "mamba2": Arch(
        name="mamba2",
        config_class=mamba2.KolmMamba2Config,
        causal_lm=mamba2.KolmMamba2ForCausalLM,
        classifier=mamba2.KolmMamba2ForSequenceClassification,
        hf_config=mamba2.config_from_section,
        flops_per_token=mamba2.flops_per_token,
        exporters={"hf": "kolm.export.hf_mamba2:export_hf_mamba2"},  # transformers' Mamba2ForCausalLM
        lora_targets=("in_proj", "out_proj"),
    ),
    "rwkv7": Arch(
        name="rwkv7",
        config_class=rwkv7.KolmRWKV7Config,
        causal_lm=rwkv7.KolmRWKV7ForCausalLM,
        classifier=rwkv7.KolmRWKV7ForSequenceClassification,
        hf_config=rwkv7.config_from_section,
        flops_per_token=rwkv7.flops_per_token,
        exporters={},  # transformers has no RWKV-7 class to export to
        # The four projections of time mixing and the two of channel mixing.
        lora_targets=("receptance", "key", "value", "output"),
    ),
    "deepseek": Arch(
        name="deepseek",
        config_class=deepseek.KolmDeepseekConfig,
        causal_lm=deepseek.KolmDeepseekForCausalLM,
        classifier=deepseek.KolmDeepseekForSequenceClassification,
        hf_config=deepseek.config_from_section,
        flops_per_token=deepseek.flops_per_token,
        exporters={"hf": "kolm.export.hf_deepseek:export_hf_deepseek"},  # transformers' DeepseekV3ForCausalLM
        # Attention projections and every expert's SwiGLU (routed and shared); the router stays as trained.
        lora_targets=(
            "q_proj",
            "q_a_proj",
            "q_b_proj",
            "kv_a_proj_with_mqa",
            "kv_b_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ),
    ),
}


def register() -> None:
    """Register kolm architectures with the Auto classes (safe to call repeatedly)."""
    for arch in ARCHS.values():
        AutoConfig.register(arch.model_type, arch.config_class, exist_ok=True)
        AutoModelForCausalLM.register(arch.config_class, arch.causal_lm, exist_ok=True)
        AutoModelForSequenceClassification.register(arch.config_class, arch.classifier, exist_ok=True)


register()


# ----------------------------------------------------------------------------
# Lookups


def get_arch(name: str) -> Arch:
    """The architecture called `name` (a `model.arch` value)."""
    try:
        return ARCHS[name]
    except KeyError:
        raise ConfigError(
            f"model.arch: {name!r} is not a kolm architecture; choose one of {', '.join(ARCHS)}"
        ) from None


def arch_of(config: PretrainedConfig) -> Arch:
    """The architecture of a model from its HF config (by `model_type`)."""
    for arch in ARCHS.values():
        if arch.model_type == config.model_type:
            return arch
    known = ", ".join(a.model_type for a in ARCHS.values())
    raise KolmError(f"{config.model_type!r} is not a kolm model type (kolm's: {known})")


def flops_per_token(config: PretrainedConfig, seq_len: int) -> float:
    """Training FLOPs per token of a model with HF config `config` on sequences of `seq_len` tokens (for MFU).

    The output projection's matmul (2·V·d forward, 6·V·d with backward) is work whether or not its weight is
    shared with the embedding: tying saves memory, not compute (PaLM's MFU convention, Chowdhery et al. 2022,
    appendix B). Each architecture's own count treats a tied head as the embedding, so it is added here.
    """
    flops = arch_of(config).flops_per_token(config, seq_len)
    if config.tie_word_embeddings:
        flops += 6.0 * config.vocab_size * config.d_model
    return flops


def lora_targets(config: PretrainedConfig) -> list[str]:
    """Names of the modules LoRA adapts in a model with HF config `config`."""
    return list(arch_of(config).lora_targets)


# ----------------------------------------------------------------------------
# Building


def hf_config(
    model_cfg: Any, vocab_size: int, bos_id: int | None = None, eos_id: int | None = None, pad_id: int | None = None
) -> PretrainedConfig:
    """The HF config of the run's `model:` section (ModelConfig) with the tokenizer's vocabulary and special ids.

    The fields every architecture has are filled here; the architecture's
    `config_from_section` adds those of its own subsection.
    """
    shared = dict(
        vocab_size=vocab_size,
        d_model=model_cfg.d_model,
        n_layers=model_cfg.n_layers,
        max_seq_len=model_cfg.max_seq_len,
        norm_eps=model_cfg.norm_eps,
        init_std=model_cfg.init_std,
        tie_word_embeddings=model_cfg.tie_embeddings,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    return get_arch(model_cfg.arch).hf_config(model_cfg, **shared)


def build_causal_lm(
    model_cfg: Any,
    vocab_size: int,
    bos_id: int | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    device: str | torch.device = "cpu",
) -> PreTrainedModel:
    """A freshly initialised causal LM for the `model:` section (built on meta, materialised on `device`)."""
    config = hf_config(model_cfg, vocab_size, bos_id, eos_id, pad_id)
    return build_on_meta(config, get_arch(model_cfg.arch).causal_lm, device)


def build_on_meta(
    config: PretrainedConfig, cls: type[PreTrainedModel], device: str | torch.device = "cpu"
) -> PreTrainedModel:
    """Construct without allocating or initialising twice: shapes on the meta device, then memory on `device`, then init."""
    with torch.device("meta"):
        model = cls(config)
    model.to_empty(device=device)
    for m in model.modules():  # init_weights skips modules already marked initialised
        m.__dict__.pop("_is_hf_initialized", None)
    model.init_weights()
    return model
