"""Find and load a model + tokenizer for generation from whatever directory a user points at.

Accepted: an HF model dir (config.json), a PEFT adapter dir (adapter_config.json;
merged into its base so the engine sees plain linear layers), or a run dir
(its `pretrain/final/`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kolm.errors import CheckpointError, KolmError

__all__ = ["resolve_model_dir", "load_for_generation", "parse_dtype"]

DTYPES = {"auto": None, "fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


def parse_dtype(name: str | None) -> Any:
    """torch dtype from a short name (fp32, bf16, fp16) or None for the checkpoint's own."""
    import torch

    if name is None or DTYPES.get(name) is None:
        if name is not None and name not in DTYPES:
            raise KolmError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
        return None
    return getattr(torch, DTYPES[name])


def resolve_model_dir(path: str | Path) -> Path:
    """The model or adapter dir meant by `path` (a model dir, an adapter dir, or a run dir)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; pass a model dir such as runs/<name>/pretrain/final")
    for candidate in (path, path / "pretrain" / "final"):
        if (candidate / "config.json").exists() or (candidate / "adapter_config.json").exists():
            return candidate
    raise CheckpointError(f"no model in {path} (no config.json or adapter_config.json); "
                          "pass runs/<name>/pretrain/final or a fine-tuned model folder")


def load_for_generation(path: str | Path, device: str = "cpu", dtype: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer) for the model at `path`."""
    from transformers import AutoTokenizer

    import kolm.models.registry  # noqa: F401  (registers kolm architectures with transformers)
    from kolm.models.registry import load_causal_lm

    model_dir = resolve_model_dir(path)
    torch_dtype = parse_dtype(dtype)
    if (model_dir / "adapter_config.json").exists():
        model, base = _merged_adapter(model_dir, torch_dtype)
        model = model.to(device).eval()
        tok_dir = model_dir if (model_dir / "tokenizer_config.json").exists() else base
    else:
        model = load_causal_lm(model_dir, device, torch_dtype)
        tok_dir = model_dir
    if not (Path(tok_dir) / "tokenizer_config.json").exists():
        raise CheckpointError(f"no tokenizer files in {tok_dir}; copy the run's tokenizer/ files next to the model")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    return model, tokenizer


def _merged_adapter(adapter_dir: Path, dtype: Any) -> tuple[Any, Path]:
    """Base model with the adapter folded into its weights (LoRA/DoRA/IA3); error for prompt-style adapters."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = Path(cfg.get("base_model_name_or_path") or "")
    if not (base / "config.json").exists():
        raise CheckpointError(f"the adapter's base model {str(base)!r} was not found; merge it first with `kolm merge`")
    if cfg.get("peft_type") in ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"):
        raise KolmError("prompt/prefix-tuning adapters add virtual tokens the engine does not handle; "
                        "use transformers' generate() on the PEFT model instead")
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, **kwargs), adapter_dir)
    return model.merge_and_unload(), base
