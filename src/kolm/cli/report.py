"""`kolm report RUN_DIR`: write report.md and report.html from a run directory."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    run_dir: Path = typer.Argument(..., help="run directory, e.g. runs/tiny"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Write the run report (보고서): report.md and a self-contained report.html with plots."""
    from kolm.report import write_report

    paths = write_report(run_dir)
    typer.echo(f"report (보고서): {paths['html']}")
