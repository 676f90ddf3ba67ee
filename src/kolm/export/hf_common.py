"""What every `hf`-style exporter shares: kolm weights into a transformers model, and that model written as a dir.

An exporter supplies only what is particular to its target: the transformers
config and class, and the mapping of tensor names (`to_llama`,
`to_deepseek_v3`, `to_mamba2`). `build_hf_model` builds the target on the meta
device and takes the mapped tensors as its weights (checking that every one
found a place); `write_hf_export` checks the source dir, converts, saves and
copies the tokenizer files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kolm.errors import CheckpointError, KolmError

__all__ = ["TOKENIZER_FILES", "build_hf_model", "write_hf_export"]

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


def build_hf_model(model: Any, hf_class: type, config: Any, state: dict[str, Any], target: str) -> Any:
    """`hf_class(config)` holding `state` (already in its names) as weights, in `model`'s dtype.

    Built on the meta device, so nothing is allocated or initialised twice;
    an unmapped or missing tensor is an error naming it (a tied output head
    may be absent).
    """
    import torch

    with torch.device("meta"):
        hf = hf_class(config)
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise KolmError(f"weights do not map onto {target}: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    rotary = getattr(getattr(hf, "model", None), "rotary_emb", None)
    if rotary is not None:
        # The rotary tables are buffers, not weights: still on meta, so built again on the CPU (never saved).
        hf.model.rotary_emb = type(rotary)(hf.config)
    hf = hf.to(model.lm_head.weight.dtype)
    if model.generation_config is not None:
        hf.generation_config = model.generation_config
    return hf


def write_hf_export(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    model_type: str,
    convert: Callable[[Any], Any],
    fmt: str,
    quant: str | None = None,
    dtype: str | None = None,
) -> Path:
    """Write the kolm model in `model_dir` (of `model_type`) through `convert` as a plain transformers dir.

    `dtype` (fp32, bf16, fp16) casts the saved weights; None keeps the
    checkpoint's. `quant` must be None or "none": quantizing plain transformers
    dirs is the consumers' business (vLLM, TensorRT-LLM quantize on load).
    """
    if quant not in (None, "none"):
        raise KolmError(f"{fmt} export writes unquantized weights (quant {quant!r}); use --format gguf or onnx")
    from transformers import AutoConfig

    from kolm.models.loading import load_model

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").exists():
        raise CheckpointError(f"no model at {model_dir} (config.json missing); pass --model runs/<name>/pretrain/final")
    found = AutoConfig.from_pretrained(model_dir).model_type
    if found != model_type:
        raise KolmError(f"{model_dir} holds a {found!r} model; {fmt} export needs a {model_type} model")
    ours, _ = load_model(model_dir, device="cpu", dtype=dtype)
    hf = convert(ours)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)
    return out_dir
