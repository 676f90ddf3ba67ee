"""The package stage: export the run's model in every configured format and measure its quantized forms.

Writes `export/<format>/` (each with its README model card) and
`export/quant/quant.{json,md}`: size on disk, resident memory, decode speed
next to the memory-bandwidth ceiling, and bits per character of each form on
held-out text from the data stage. `summary.md` puts both in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kolm.context import StageContext, StageResult
from kolm.export.config import ExportConfig
from kolm.progress import Progress

__all__ = ["run", "package"]


def package(
    cfg: ExportConfig, *, model_dir: Path, out: Path, texts: list[str] | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Export `model_dir` per `cfg` into `out`; return {"exports": {format: path}, "quant": rows or []}."""
    from kolm.export import export_model

    progress = progress or Progress(enabled=False)
    exports: dict[str, str] = {}
    with progress.task("package: export", total=len(cfg.formats)) as bar:
        for fmt in cfg.formats:
            quant = cfg.gguf_quant if fmt == "gguf" else cfg.onnx_quant if fmt == "onnx" else None
            path = export_model(model_dir, fmt, out / fmt, quant=quant, force=True)
            exports[fmt] = str(path)
            progress.log(f"exported {fmt}")
            bar.advance(1)
    rows: list[Any] = []
    if cfg.measure:
        from kolm.export.measure import measure_variants, read_bandwidth, write_table

        bandwidth = read_bandwidth()
        with progress.task(f"package: measure {len(cfg.measure)} forms", total=None):
            rows = measure_variants(
                model_dir,
                list(cfg.measure),
                texts=texts,
                new_tokens=cfg.new_tokens,
                work_dir=out / "quant" / "work",
                bandwidth_gbs=bandwidth,
            )
        import shutil

        shutil.rmtree(out / "quant" / "work", ignore_errors=True)  # the measured copies; the exports above stay
        write_table(rows, out / "quant", bandwidth)
    return {"exports": exports, "quant": rows}


def _heldout(data_dir: Path, limit: int = 20) -> list[str] | None:
    """A few validation documents of the data stage (quality on the run's own held-out text), or None."""
    if not (data_dir / "validation").is_dir():
        return None
    from kolm.data.io import read_split

    texts = []
    for text in read_split(data_dir, "validation"):
        texts.append(text)
        if len(texts) >= limit:
            break
    return texts or None


def run(ctx: StageContext) -> StageResult:
    """Stage `package`: export.model (default pretrain/final) in each format, then the quantization table."""
    cfg = ctx.cfg.export
    model_dir = Path(cfg.model) if cfg.model else ctx.stage_dir("pretrain") / "final"
    from kolm.models.loading import find_model_dir

    model_dir = find_model_dir(model_dir)
    ctx.input(model_dir)
    result = package(
        cfg, model_dir=model_dir, out=ctx.out, texts=_heldout(ctx.stage_dir("data")), progress=ctx.progress
    )
    lines = [
        "# Export and quantization (내보내기·양자화)",
        "",
        f"Model: `{model_dir}`",
        "",
        "| format | folder |",
        "| --- | --- |",
    ]
    lines += [f"| {fmt} | `{ctx.output(Path(p))}` |" for fmt, p in result["exports"].items()]
    outputs = {fmt: ctx.output(Path(p)) for fmt, p in result["exports"].items()}
    metrics: dict[str, Any] = {}
    if result["quant"]:
        quant_md = ctx.out / "quant" / "quant.md"
        text = quant_md.read_text(encoding="utf-8")
        lines += ["", "#" + text if text.startswith("# ") else text]  # one level below the stage's heading
        outputs["quant"] = ctx.output(quant_md)
        for row in result["quant"]:
            metrics[f"{row.variant}.size_mb"] = round(row.size_mb, 2)
            if getattr(row, "decode_tok_s", None):
                metrics[f"{row.variant}.decode_tok_s"] = round(row.decode_tok_s, 1)
    (ctx.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs["summary"] = ctx.output(ctx.out / "summary.md")
    return StageResult(outputs=outputs, metrics=metrics)
