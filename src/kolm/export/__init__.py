"""Export: write a kolm model dir in formats that need nothing of kolm.

`FORMATS` lists every format with what it writes and the quant types it
takes; which formats apply to a model is its architecture's business
(`kolm.models.registry.Arch.exporters`). One module per format (`hf_llama.py`,
`gguf.py`, `onnx.py`); `export_model` checks everything a user can get wrong
before any work (format, architecture, quant type, tokenizer, an existing
target), writes into a `<out>.partial` folder beside the target, adds the
model card (`card.py`) and only then puts the folder in place, so a failed
export never leaves half a folder or overwrites a good one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kolm.errors import CheckpointError, KolmError

__all__ = ["FORMATS", "Format", "export_model", "check_export"]


@dataclass(frozen=True)
class Format:
    """One export format: what it writes and which `--quant` values it takes (the first is the default)."""

    writes: str
    quants: tuple[str, ...] = ("none",)
    dtypes: tuple[str, ...] = ("fp32", "bf16", "fp16")


FORMATS: dict[str, Format] = {
    "hf-llama": Format("a plain transformers LlamaForCausalLM dir (Llama consumers: vLLM, TensorRT-LLM, llama.cpp)"),
    "hf": Format(
        "the model as the transformers architecture it maps to (gpt: Llama, mamba2: Mamba2, deepseek: DeepseekV3), "
        "loadable without kolm"
    ),
    "gguf": Format(
        "one .gguf file of llama architecture for llama.cpp and Ollama",
        quants=("q8_0", "f32", "f16", "bf16", "q4_0"),
        dtypes=(),
    ),
    "onnx": Format(
        "model.onnx with a KV cache (optimum's names) for onnxruntime", quants=("none", "int8"), dtypes=("fp32",)
    ),
}


def check_export(
    model_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    quant: str | None = None,
    dtype: str | None = None,
    force: bool = False,
) -> tuple[str, str | None]:
    """Every user error of an export, found before any work: returns (quant, dtype) resolved.

    Unknown format; a format the model's architecture has no exporter for (the
    message names the formats it has); a quant type or dtype the format does
    not take (names the ones it does); no model or no tokenizer in
    `model_dir`; an existing non-empty target without `force`.
    """
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
    spec = FORMATS[fmt]
    quant = (quant or spec.quants[0]).lower()
    if quant not in spec.quants:
        applicable = [f"{f} ({', '.join(FORMATS[f].quants)})" for f in arch.exporters if FORMATS[f].quants != ("none",)]
        raise KolmError(
            f"quant {quant!r} does not apply to {fmt} export of {arch.name} models; "
            f"{fmt} takes {', '.join(spec.quants)}"
            + (f"; quantizing formats: {'; '.join(applicable)}" if applicable else "")
        )
    if dtype is not None and dtype not in spec.dtypes:
        raise KolmError(
            f"--dtype {dtype} does not apply to {fmt} export; "
            + (f"choose one of {', '.join(spec.dtypes)}" if spec.dtypes else "its --quant sets the storage type")
        )
    if not ((model_dir / "tokenizer.json").is_file() or (model_dir / "tokenizer_config.json").is_file()):
        raise CheckpointError(
            f"no tokenizer in {model_dir}: an export must carry one; copy the run's tokenizer/ files next to the model"
        )
    if out is not None and Path(out).exists() and any(Path(out).iterdir()) and not force:
        raise KolmError(f"{out} already exists; pass --force to replace it, or choose another --out")
    return quant, dtype


def export_model(
    model_dir: str | Path,
    fmt: str,
    out: str | Path,
    *,
    quant: str | None = None,
    dtype: str | None = None,
    force: bool = False,
    card: bool = True,
) -> Path:
    """Write the kolm model in `model_dir` as format `fmt` (one of FORMATS that applies to its arch) at `out`.

    `quant`/`dtype`: see FORMATS. An existing `out` is replaced only with
    `force=True`, and only after the new export succeeded. `card` writes the
    README.md model card (Korean and English) into the export.
    """
    quant, dtype = check_export(model_dir, fmt, out, quant=quant, dtype=dtype, force=force)
    from transformers import AutoConfig

    from kolm.models.registry import arch_of

    model_dir, out = Path(model_dir), Path(out)
    arch = arch_of(AutoConfig.from_pretrained(model_dir))
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        arch.exporter(fmt)(model_dir, partial, quant=quant, dtype=dtype)
        if card:
            from kolm.export.card import write_card

            write_card(partial, model_dir, fmt, quant=quant)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    partial.rename(out)
    return out
