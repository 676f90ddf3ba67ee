"""`kolm export`: write a trained model in a format that needs nothing of kolm (hf-llama, hf, gguf, onnx)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="model dir (default: <run-dir>/pretrain/final)"),
    fmt: str = typer.Option(
        "hf-llama", "--format", "-f", help="hf-llama | hf (plain transformers), gguf (llama.cpp, Ollama), onnx"
    ),
    quant: Optional[str] = typer.Option(
        None, "--quant", "-q", help="gguf: q8_0 (default), f32, f16, bf16, q4_0; onnx: none (default), int8"
    ),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="hf/hf-llama weights: fp32, bf16, fp16"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dir (default: <run>/export/<format>)"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="run directory, used when --model is not given"),
    force: bool = typer.Option(False, "--force", help="replace an existing output dir"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Export a model (모델 내보내기) for transformers, vLLM, llama.cpp/Ollama or onnxruntime, with a model card."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would interleave with the output
    from kolm.errors import KolmError
    from kolm.export import FORMATS, export_model
    from kolm.export.card import run_of
    from kolm.models.loading import find_model_dir

    if fmt not in FORMATS:
        raise KolmError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if model is None:
        if run_dir is None:
            raise KolmError("pass --model DIR (e.g. runs/<name>/pretrain/final) or --run-dir runs/<name>")
        model = run_dir / "pretrain" / "final"
    model_dir = find_model_dir(model)
    if out is None:
        run = run_dir or run_of(model_dir)
        if run is None:
            raise KolmError(f"{model_dir} is not inside a run directory; pass --out DIR")
        out = run / "export" / fmt
    path = export_model(model_dir, fmt, out, quant=quant, dtype=dtype, force=force)
    typer.echo(f"exported {fmt}: {path}")
