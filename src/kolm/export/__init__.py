"""Export: write a kolm model dir in formats that need nothing of kolm.

`FORMATS` lists every format with what it writes; which of them apply to a
model is its architecture's business (`kolm.models.registry.Arch.exporters`).
One module per format (`hf_llama.py`); `export_model` picks the function.
"""

from __future__ import annotations

from pathlib import Path

from kolm.errors import CheckpointError, KolmError

__all__ = ["FORMATS", "export_model"]

# format -> what it writes
FORMATS: dict[str, str] = {
    "hf-llama": "a plain transformers LlamaForCausalLM dir (Llama consumers: vLLM, llama.cpp's converter, ...)",
}


def export_model(model_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the kolm model in `model_dir` as format `fmt` (one of FORMATS that applies to its arch) at `out`."""
    if fmt not in FORMATS:
        raise KolmError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"no model at {model_dir} (config.json missing); pass --model runs/<name>/pretrain/final")
    from transformers import AutoConfig

    from kolm.models.registry import arch_of

    try:
        arch = arch_of(AutoConfig.from_pretrained(model_dir))
    except KolmError as exc:
        raise KolmError(f"{model_dir}: {exc}; kolm export takes models trained by kolm") from None
    if fmt not in arch.exporters:
        raise KolmError(
            f"{fmt} export does not apply to {arch.name} models; "
            f"formats for {arch.name}: {', '.join(arch.exporters) or 'none yet'}"
        )
    return arch.exporter(fmt)(model_dir, Path(out))
