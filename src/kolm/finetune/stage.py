"""The `finetune` stage: fine-tune the pretrained model on each configured task.

Writes `finetune/<task>/adapter/` (PEFT format; `model/` for full fine-tuning)
with the tokenizer, `metrics.jsonl`, `eval.json`, and a `summary.md` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kolm.context import StageContext, StageResult
from kolm.finetune.config import FinetuneConfig
from kolm.finetune.trainer import FinetuneResult, finetune
from kolm.metrics.classification import confusion_markdown
from kolm.runtime import resolve_device

__all__ = ["run", "base_model_dir", "stage_device", "results_table"]


def base_model_dir(cfg: FinetuneConfig, pretrain_dir: Path) -> Path:
    """The model to fine-tune: finetune.base_model, else the run's pretrain/final."""
    return Path(cfg.base_model) if cfg.base_model else pretrain_dir / "final"


def stage_device(cfg: FinetuneConfig, ctx: StageContext) -> str:
    """The run's device, or the `finetune.device` override (resolved here, the only place it is read)."""
    return resolve_device(cfg.device) if cfg.device else ctx.device


# Validation scores shown in the table: classify, sft, and the official metrics of the KLUE tasks.
_SHOWN = ("accuracy", "macro_f1", "loss", "perplexity", "pearson", "f1", "entity_f1", "char_f1", "exact_match")
_SHOWN += ("rouge_w", "micro_f1", "auprc")


def results_table(results: list[FinetuneResult]) -> str:
    """Markdown table: parameters, memory, time, speed and scores of each run."""
    head = "| task | method | trainable params | trainable % | peak memory (MB) | wall time (s) | tokens/s | validation | test accuracy | test macro-F1 |"
    lines = [head, "|" + "---|" * 10]
    for r in results:
        val = ", ".join(f"{k}={v:.4g}" for k, v in r.validation.items() if k in _SHOWN)
        acc = r.test.get("accuracy")
        f1 = r.test.get("macro_f1")
        lines.append(
            f"| {r.task} | {r.method} | {r.trainable_params:,} | {r.trainable_pct:.3f} | {r.peak_memory_mb} | "
            f"{r.wall_time_s} | {r.tokens_per_s:,.0f} | {val} | {'' if acc is None else f'{acc:.4f}'} | {'' if f1 is None else f'{f1:.4f}'} |"
        )
    return "\n".join(lines)


def run(ctx: StageContext) -> StageResult:
    """Fine-tune every task in `finetune.tasks` with `finetune.method`."""
    cfg = ctx.cfg.finetune
    base = base_model_dir(cfg, ctx.stage_dir("pretrain"))
    device = stage_device(cfg, ctx)
    results = []
    for task in cfg.tasks:
        ctx.log(f"finetune: {task} with {cfg.method} on {base}")
        results.append(
            finetune(
                cfg,
                task,
                cfg.method,
                base_model=base,
                out=ctx.out / task,
                seed=ctx.cfg.seed,
                device=device,
                progress=ctx.progress,
            )
        )
    ctx.input(base)
    parts = [
        "# Fine-tuning (미세조정)",
        "",
        f"Base model: `{base}` · method: **{cfg.method}**",
        "",
        results_table(results),
    ]
    for r in results:
        if r.test.get("confusion_matrix"):
            parts += ["", f"Confusion matrix of `{r.task}` on the test split:", "", confusion_markdown(r.test)]
    (ctx.out / "summary.md").write_text("\n".join(parts) + "\n", encoding="utf-8")
    metrics: dict[str, Any] = {}
    outputs: dict[str, str] = {}
    for r in results:
        outputs[r.task] = ctx.output(r.output_dir)
        for k, v in {
            **{f"val_{k}": v for k, v in r.validation.items()},
            **{f"test_{k}": v for k, v in r.test.items() if isinstance(v, (int, float))},
        }.items():
            metrics[f"{r.task}.{k}"] = round(v, 5) if isinstance(v, float) else v
    return StageResult(outputs=outputs, metrics=metrics)
