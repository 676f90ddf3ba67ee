"""Merge a PEFT adapter into its base model and save a plain model directory (`kolm merge`)."""

from __future__ import annotations

from pathlib import Path

from kolm.errors import KolmError

__all__ = ["merge_adapter"]


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | Path | None = None) -> Path:
    """Fold the adapter's update into the base weights and save a full model dir with the tokenizer.

    The adapter and its base are loaded by `kolm.models.loading.load_model`
    (base: `base_model`, else the one recorded with the adapter); a
    classification adapter keeps its head and labels (`kolm_task.json`).
    Prompt-tuning adapters add virtual tokens, not weights, and cannot be merged.
    """
    from kolm.models.loading import find_model_dir, is_adapter, load_model, task_info, write_task_info

    source = find_model_dir(adapter_dir)
    if not is_adapter(source):
        raise KolmError(
            f"{source} is not a PEFT adapter folder (no adapter_config.json); a full model needs no merging"
        )
    info = task_info(source)
    task = "classify" if info.get("task") == "classify" else "causal-lm"
    model, tokenizer = load_model(source, task=task, base_model=base_model, merge=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if info:
        write_task_info(
            out, info.get("task", "sft"), f"{info.get('method', 'adapter')} (merged)", info.get("labels") or [], None
        )
    return out
