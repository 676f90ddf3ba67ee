"""Merge a PEFT adapter into its base model and save a plain model directory (`kolm merge`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kolm.errors import KolmError

__all__ = ["load_adapter_model", "merge_adapter"]


def _adapter_base(adapter_dir: Path) -> str | None:
    try:
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KolmError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)") from None
    return cfg.get("base_model_name_or_path")


def load_adapter_model(adapter_dir: str | Path, base_model: str | Path | None = None, task: str | None = None) -> Any:
    """Load base model + adapter as a PeftModel; checks that the adapter fits the base."""
    import kolm.models.registry  # noqa: F401  (registers kolm architectures with transformers)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    adapter_dir = Path(adapter_dir)
    base = Path(base_model) if base_model else None
    if base is None:
        recorded = _adapter_base(adapter_dir)
        if not recorded or not Path(recorded).exists():
            raise KolmError(f"the adapter's base model {recorded!r} was not found; pass --base-model DIR")
        base = Path(recorded)
    meta_path = adapter_dir / "kolm_task.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    task = task or meta.get("task", "sft")
    if task == "classify":
        labels = meta.get("labels") or ["0", "1"]
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)}
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(base)
    try:
        return PeftModel.from_pretrained(model, adapter_dir)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise KolmError(
            f"the adapter in {adapter_dir} does not match the base model {base} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); pass the model it was trained from"
        ) from None


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | Path | None = None) -> Path:
    """Fold the adapter's update into the base weights and save a full model dir with the tokenizer."""
    from transformers import AutoTokenizer

    model = load_adapter_model(adapter_dir, base_model)
    if not hasattr(model, "merge_and_unload"):
        raise KolmError("this adapter type cannot be merged into the weights (prompt tuning adds tokens, not weights)")
    merged = model.merge_and_unload()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    try:
        AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(out)
    except (OSError, ValueError):
        pass
    return out
