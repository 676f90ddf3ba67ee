"""`kolm arch compare`: pretrain GPT, Mamba-2, RWKV-7 and DeepSeek (MoE + MLA) alike and compare them side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def command(
    action: str = typer.Argument(..., help="compare"),
    overrides: Optional[List[str]] = typer.Argument(None, help="overrides such as pretrain.max_steps=50"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="preset name (e.g. arch) or YAML file"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="run directory (default: runs/<name>)"),
    archs: Optional[List[str]] = typer.Option(
        None, "--arch", "-a", help="architecture to include (repeatable; default: gpt, mamba2, rwkv7, deepseek)"
    ),
    lengths: str = typer.Option("128,512,2048,8192", "--lengths", help="context lengths of the latency measurement"),
    decode_tokens: int = typer.Option(8, "--decode-tokens", help="tokens decoded per latency measurement"),
    in_process: bool = typer.Option(False, "--in-process", help="train every arch in this process (no fresh one)"),
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks"),
) -> None:
    """Compare architectures (아키텍처 비교): same data, tokenizer and token budget at matched parameter counts."""
    from kolm.config import load_config
    from kolm.errors import ConfigError
    from kolm.progress import Progress
    from kolm.run import run_stage
    from kolm.runtime import resolve_device
    from kolm.train.compare import SIZE_KNOBS, compare_archs

    if action != "compare":
        raise ConfigError(f"kolm arch {action!r}: the only action is `compare`")
    try:
        sizes = tuple(int(x) for x in lengths.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--lengths {lengths!r}: give comma-separated token counts, e.g. 128,512,2048") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--lengths {lengths!r}: give positive token counts")
    cfg = load_config(config, overrides or [], run_dir=run_dir)
    with Progress() as progress:
        for stage in ("data", "tokenizer"):  # the shared inputs; skipped when up to date
            run_stage(cfg, stage, progress=progress)
        compare_archs(
            cfg.model,
            cfg.pretrain,
            list(archs or SIZE_KNOBS),
            data_dir=cfg.run_path / "data",
            tokenizer_dir=cfg.run_path / "tokenizer",
            out=cfg.run_path / "arch",
            seed=cfg.seed,
            device=resolve_device(cfg.device),
            lengths=sizes,
            decode_tokens=decode_tokens,
            isolate=not in_process,
            log=progress.log,
        )
    md = cfg.run_path / "arch" / "compare.md"
    typer.echo(md.read_text(encoding="utf-8"))
    typer.echo(f"chart (그래프): {cfg.run_path / 'arch' / 'compare.png'}")
