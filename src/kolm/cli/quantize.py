"""`kolm quantize`: what each quantized form of a model costs and gains here: size, memory, speed, quality."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def command(
    model: Path = typer.Option(..., "--model", "-m", help="kolm model dir (e.g. runs/<name>/pretrain/final)"),
    variants: Optional[List[str]] = typer.Option(
        None,
        "--variant",
        "-v",
        help="fp32, bf16, int8, int8-wo, onnx, onnx-int8, gguf-q8_0, gguf-q4_0 (repeatable; default: all that run here)",
    ),
    text: Optional[Path] = typer.Option(
        None, "--text", help="held-out text, one document per line (default: built-in Korean sentences)"
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="folder for quant.json and quant.md (default: <run>/export/quant)"
    ),
    new_tokens: int = typer.Option(32, "--new-tokens", help="tokens decoded per speed measurement"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Measure quantized forms of a model side by side (양자화 비교): size, memory, decode speed, perplexity."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from kolm.errors import KolmError
    from kolm.export.card import run_of
    from kolm.export.measure import default_variants, measure_variants, read_bandwidth, write_table
    from kolm.models.loading import find_model_dir

    model_dir = find_model_dir(model)
    if out is None:
        run = run_of(model_dir)
        if run is None:
            raise KolmError(f"{model_dir} is not inside a run directory; pass --out DIR")
        out = run / "export" / "quant"
    texts = None
    if text is not None:
        texts = [line for line in text.read_text(encoding="utf-8").splitlines() if line.strip()]
    bandwidth = read_bandwidth()
    rows = measure_variants(
        model_dir, list(variants or default_variants()), texts=texts, new_tokens=new_tokens, bandwidth_gbs=bandwidth
    )
    md = write_table(rows, out, bandwidth)
    typer.echo(md.read_text(encoding="utf-8"))
