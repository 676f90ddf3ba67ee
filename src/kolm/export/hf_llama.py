"""`hf-llama`: a KolmGPT model dir as a plain `LlamaForCausalLM` dir that loads without kolm.

Writes config.json, model.safetensors, generation_config.json and the
tokenizer files. KolmGPT already uses Llama's parameter names, rotary layout
(rotate-half) and RMSNorm, so the export is a config translation plus a copy
of the tensors; the loaded Llama reproduces our logits
(tests/infer/test_infer_export.py checks fp32 to 1e-5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kolm.export.hf_common import build_hf_model, write_hf_export

__all__ = ["llama_config", "to_llama", "export_hf_llama"]


def llama_config(config: Any) -> dict[str, Any]:
    """`LlamaConfig` keyword arguments equivalent to a KolmGPTConfig."""
    return dict(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.ffn_dim,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads,
        head_dim=config.d_model // config.n_heads,
        max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_theta)},
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        initializer_range=config.init_std,
        tie_word_embeddings=bool(config.tie_word_embeddings),
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


def to_llama(model: Any) -> Any:
    """A `LlamaForCausalLM` holding copies of a KolmGPT causal LM's weights, in the same dtype."""
    from transformers import LlamaConfig, LlamaForCausalLM

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return build_hf_model(model, LlamaForCausalLM, LlamaConfig(**llama_config(model.config)), state, "Llama")


def export_hf_llama(
    model_dir: str | Path, out_dir: str | Path, *, quant: str | None = None, dtype: str | None = None
) -> Path:
    """Write `model_dir` (a KolmGPT causal LM with its tokenizer) as a vanilla Llama directory at `out_dir`.

    `dtype` (fp32, bf16, fp16) casts the saved weights; None keeps the checkpoint's. `quant` must be None or
    "none": quantized Llama dirs are the consumers' business (vLLM, TensorRT-LLM quantize on load).
    """
    from kolm.models.gpt import KolmGPTConfig

    return write_hf_export(
        model_dir,
        out_dir,
        model_type=KolmGPTConfig.model_type,
        convert=to_llama,
        fmt="hf-llama",
        quant=quant,
        dtype=dtype,
    )
