"""`kolm doctor`: environment check as a table, or JSON for machines."""

from __future__ import annotations

import json

import typer


def command(
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Check the environment (환경 점검): Python, OS, CPU, RAM, torch build, GPU, bf16, optional packages."""
    from kolm.doctor import check

    report = check()
    if json_out:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        _print_table(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    t = report.torch
    gpus = ", ".join(f"{g['name']} ({g['memory_gb']} GB)" for g in t.get("gpus", [])) or "none"
    table = Table(title="kolm doctor (환경 점검)", show_header=True)
    table.add_column("item")
    table.add_column("value")
    rows = [
        ("Python", report.python),
        ("OS", f"{report.os} ({report.machine})"),
        ("CPU cores", str(report.cpu_cores)),
        ("RAM", f"{report.ram_gb} GB"),
        ("torch", f"{t.get('version', 'missing')} ({t.get('build', '-')})"),
        ("device (auto)", t.get("device", "-")),
        ("GPU", gpus),
        ("bf16", str(t.get("bf16", "-"))),
    ]
    for name, version in report.required.items():
        rows.append((f"required: {name}", version or "[red]missing[/red]"))
    for name, version in report.optional.items():
        rows.append((f"optional: {name}", version or "[dim]not installed[/dim]"))
    for item, value in rows:
        table.add_row(item, value)
    console = Console()
    console.print(table)
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {problem}")
    if report.ok:
        console.print("[green]ok[/green]: everything required is installed")
