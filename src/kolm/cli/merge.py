"""`kolm merge`: fold a PEFT adapter into its base model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    adapter: Path = typer.Argument(..., help="PEFT adapter folder, e.g. runs/tiny/finetune/sft/adapter"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for the merged model"),
    base_model: Optional[Path] = typer.Option(
        None, "--base-model", help="base model dir (default: recorded in the adapter)"
    ),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Merge an adapter into its base model (어댑터 병합) and save a full model folder."""
    from kolm.finetune.merge import merge_adapter

    path = merge_adapter(adapter, out, base_model)
    typer.echo(f"merged model: {path}")
