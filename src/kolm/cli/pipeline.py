"""`kolm pipeline`: every configured stage in order, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def command(
    overrides: Optional[List[str]] = typer.Argument(None, help="overrides such as pretrain.max_steps=50"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="preset name (tiny, small, base) or YAML file"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="run directory (default: runs/<name>)"),
    force: bool = typer.Option(False, "--force", help="re-run stages even when up to date"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Run the whole chain (전체 파이프라인): data -> tokenizer -> pretrain -> finetune -> eval -> report."""
    from kolm.config import load_config
    from kolm.pipeline import run_pipeline
    from kolm.progress import Progress

    cfg = load_config(config, overrides or [], run_dir=run_dir)
    with Progress() as progress:
        run_pipeline(cfg, force=force, progress=progress)
    report = cfg.run_path / "report" / "report.html"
    if report.exists():
        typer.echo(f"report (보고서): {report}")
