"""`kolm export`: write a trained model in a format that needs nothing of kolm (hf-llama)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _run_of(model_dir: Path) -> Path | None:
    """The run directory holding `model_dir` (the nearest parent with config.yaml), if any."""
    for parent in [model_dir, *model_dir.resolve().parents]:
        if (parent / "config.yaml").exists():
            return parent
    return None


def command(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="model dir (default: <run-dir>/pretrain/final)"),
    fmt: str = typer.Option("hf-llama", "--format", "-f", help="export format: hf-llama (plain transformers Llama)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dir (default: <run>/export/<format>)"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="run directory, used when --model is not given"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Export a model (모델 내보내기) as a plain Llama folder for transformers, vLLM or llama.cpp."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would interleave with the output
    from kolm.errors import KolmError
    from kolm.export import FORMATS, export_model
    from kolm.models.loading import find_model_dir

    if fmt not in FORMATS:
        raise KolmError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if model is None:
        if run_dir is None:
            raise KolmError("pass --model DIR (e.g. runs/<name>/pretrain/final) or --run-dir runs/<name>")
        model = run_dir / "pretrain" / "final"
    model_dir = find_model_dir(model)
    if out is None:
        run = run_dir or _run_of(model_dir)
        if run is None:
            raise KolmError(f"{model_dir} is not inside a run directory; pass --out DIR")
        out = run / "export" / fmt
    path = export_model(model_dir, fmt, out)
    typer.echo(f"exported {fmt}: {path}")
