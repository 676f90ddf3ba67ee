"""`kolm push`: share a model on the Hugging Face Hub: an export in the chosen format plus a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    model: Path = typer.Option(..., "--model", "-m", help="kolm model dir (exported first) or an export folder"),
    repo: str = typer.Option(..., "--repo", "-r", help="Hub repo USER/NAME (created if missing)"),
    fmt: str = typer.Option("hf-llama", "--format", "-f", help="what to upload: hf-llama, hf, gguf, onnx"),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="gguf/onnx quant type (see kolm export)"),
    private: bool = typer.Option(False, "--private", help="create the repo private"),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Hub URL (default: $HF_ENDPOINT or the Hub)"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Upload a model to the Hugging Face Hub (허브에 공유) with a Korean/English model card.

    The token comes from $HF_TOKEN or `hf auth login`; without one nothing is uploaded.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from kolm.export.hub import push

    url = push(model, repo, fmt=fmt, quant=quant, private=private, endpoint=endpoint)
    typer.echo(f"pushed {fmt} to {repo}: {url}")
