"""`hf-llama`: a KolmGPT model dir as a plain `LlamaForCausalLM` dir that loads without kolm.

Writes config.json, model.safetensors, generation_config.json and the
tokenizer files. KolmGPT already uses Llama's parameter names, rotary layout
(rotate-half) and RMSNorm, so the export is a config translation plus a copy
of the tensors; the loaded Llama reproduces our logits
(tests/infer/test_infer_export.py checks fp32 to 1e-5).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kolm.errors import CheckpointError, KolmError

__all__ = ["llama_config", "to_llama", "export_hf_llama"]

# Tokenizer files copied next to the exported weights when present.
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
]


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
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        llama = LlamaForCausalLM(LlamaConfig(**llama_config(model.config)))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    missing, unexpected = llama.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (k == "lm_head.weight" and llama.config.tie_word_embeddings)]
    if missing or unexpected:
        raise KolmError(f"weights do not map onto Llama: missing {missing}, unexpected {unexpected}")
    llama.tie_weights()
    # The rotary tables are buffers, not weights: still on meta, so built again on the CPU (never saved).
    llama.model.rotary_emb = type(llama.model.rotary_emb)(llama.config)
    llama = llama.to(model.lm_head.weight.dtype)
    if model.generation_config is not None:
        llama.generation_config = model.generation_config
    return llama


def export_hf_llama(
    model_dir: str | Path, out_dir: str | Path, *, quant: str | None = None, dtype: str | None = None
) -> Path:
    """Write `model_dir` (a KolmGPT causal LM with its tokenizer) as a vanilla Llama directory at `out_dir`.

    `dtype` (fp32, bf16, fp16) casts the saved weights; None keeps the checkpoint's. `quant` must be None or
    "none": quantized Llama dirs are the consumers' business (vLLM, TensorRT-LLM quantize on load).
    """
    if quant not in (None, "none"):
        raise KolmError(f"hf-llama export writes unquantized weights (quant {quant!r}); use --format gguf or onnx")
    from transformers import AutoConfig

    from kolm.models.gpt import KolmGPTConfig
    from kolm.models.loading import load_model

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").exists():
        raise CheckpointError(f"no model at {model_dir} (config.json missing); pass --model runs/<name>/pretrain/final")
    model_type = AutoConfig.from_pretrained(model_dir).model_type
    if model_type != KolmGPTConfig.model_type:
        raise KolmError(
            f"{model_dir} holds a {model_type!r} model; hf-llama export needs a {KolmGPTConfig.model_type} model"
        )
    ours, _ = load_model(model_dir, device="cpu", dtype=dtype)
    llama = to_llama(ours)
    out_dir.mkdir(parents=True, exist_ok=True)
    llama.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)
    return out_dir
