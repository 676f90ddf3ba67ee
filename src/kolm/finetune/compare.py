"""`kolm finetune compare`: several methods on the same task, data and budget, side by side.

The week-6 deliverable: trainable parameters, peak memory, wall time, tokens/s,
validation and test accuracy and macro-F1 of each method in one table and chart
(`finetune/compare/compare.md`, `compare.png`).
"""

from __future__ import annotations

from pathlib import Path

from kolm.context import StageContext, StageResult
from kolm.files import write_json
from kolm.finetune.config import FinetuneConfig
from kolm.finetune.stage import base_model_dir, results_table, stage_device
from kolm.finetune.trainer import FinetuneResult, finetune

__all__ = ["run", "plot_comparison"]


def plot_comparison(results: list[FinetuneResult], path: str | Path) -> None:
    """Bars of test (or validation) accuracy, trainable share and wall time per method."""
    from kolm.plotting import setup_korean_font

    setup_korean_font()
    import matplotlib.pyplot as plt

    names = [r.method for r in results]
    acc = [r.test.get("accuracy", r.validation.get("accuracy", 0.0)) for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    for ax, values, title in (
        (axes[0], acc, "accuracy (정확도)"),
        (axes[1], [r.trainable_pct for r in results], "trainable % (학습 파라미터 비율)"),
        (axes[2], [r.wall_time_s for r in results], "wall time s (학습 시간)"),
    ):
        ax.bar(names, values, color="#4878a8")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    axes[1].set_yscale("log")
    fig.suptitle("fine-tuning methods on the same task and budget (미세조정 방법 비교)")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _run_isolated(cfg: FinetuneConfig, method: str, base: Path, out: Path, seed: int, device: str) -> FinetuneResult:
    """Fine-tune the classification task in a fresh process, so each method's peak memory starts from the same state.

    In one process the allocator keeps what earlier methods freed, and later
    methods would look cheaper than they are. The worker gets the fine-tuning
    section and plain values, nothing else of the run.
    """
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(
            finetune,
            (cfg, "classify", method),
            {"base_model": str(base), "out": str(out), "seed": seed, "device": device},
        )


def run(ctx: StageContext) -> StageResult:
    """Fine-tune the classification task with each of `finetune.compare_methods`."""
    cfg = ctx.cfg.finetune
    base = base_model_dir(cfg, ctx.stage_dir("pretrain"))
    ctx.input(base)
    device = stage_device(cfg, ctx)
    out = ctx.out / "compare"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for method in cfg.compare_methods:
        ctx.log(f"finetune compare: {method} (separate process)")
        r = _run_isolated(cfg, method, base, out / method, ctx.cfg.seed, device)
        ctx.log(
            f"  {method}: test accuracy {r.test.get('accuracy', float('nan')):.4f}, {r.wall_time_s} s, peak +{r.peak_memory_mb} MB"
        )
        results.append(r)
    table = results_table(results)
    plot_comparison(results, out / "compare.png")
    budget = f"{cfg.max_steps} steps × {cfg.batch_size} examples" if cfg.epochs <= 0 else f"{cfg.epochs} epochs"
    text = "\n".join(
        [
            "# Fine-tuning methods compared (미세조정 방법 비교)",
            "",
            f"Task: classify · data: {cfg.classify.kind} · base: `{base}` · budget: {budget} for every method.",
            "",
            table,
            "",
            "![comparison](compare.png)",
            "",
        ]
    )
    (out / "compare.md").write_text(text, encoding="utf-8")
    (out / "summary.md").write_text(text, encoding="utf-8")
    write_json(
        out / "compare.json",
        [{**r.__dict__, "output_dir": ctx.output(r.output_dir), "trainable_pct": r.trainable_pct} for r in results],
    )
    metrics = {f"{r.method}.test_accuracy": r.test.get("accuracy") for r in results}
    return StageResult(outputs={"compare": ctx.output(out / "compare.md")}, metrics=metrics)
