"""`kolm align compare`: DPO, PPO and GRPO from the same model, on the same prompts and budget, side by side.

Each method in `align.compare_methods` starts from the same policy, trains
on the same training prompts for `align.steps` steps of `align.batch_size`
responses (or pairs), and is sampled on the same held-out prompts with the
same seed as the reference (the model before alignment). Per method: mean
reward, positive rate, win rate against the reference judged by the reward
(per prompt, the aligned response scores higher; a tie counts half), and by
the LLM judge of `kolm eval` (`eval.judge`) when an endpoint is configured,
KL to the reference, response length and wall time. Writes
`align/compare/compare.{md,json,png}` and `samples.jsonl`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kolm.align.stage import AlignResult, align, policy_dir, reward_spec, stage_device
from kolm.context import StageContext, StageResult
from kolm.files import append_jsonl, write_json

__all__ = ["run", "win_rate", "compare_table", "plot_compare"]


def win_rate(aligned: list[float], reference: list[float]) -> float:
    """Share of prompts where the aligned response has the higher reward; ties count half."""
    wins = sum(1.0 if a > r else 0.5 if a == r else 0.0 for a, r in zip(aligned, reference))
    return round(wins / max(1, len(aligned)), 4)


def compare_table(results: list[AlignResult], judged: dict[str, float] | None = None) -> str:
    """Markdown: the reference row, then one row per method."""
    judged = judged or {}
    head = "| model | mean reward | positive rate | win rate vs reference (reward) | win rate (judge) | KL to reference | response tokens | wall time (s) |"
    lines = [head, "|" + "---|" * 8]
    ref = results[0].before
    if ref is not None:
        lines.append(
            f"| reference (before) | {ref.mean_reward:.3f} | {ref.positive_rate:.3f} | - | - | 0 | {ref.response_tokens:.1f} | - |"
        )
    for r in results:
        a = r.after
        if a is None or ref is None:
            continue
        j = judged.get(r.method)
        lines.append(
            f"| {r.method} | {a.mean_reward:.3f} | {a.positive_rate:.3f} | {win_rate(a.rewards, ref.rewards):.3f} | "
            f"{'' if j is None else f'{j:.3f}'} | {a.kl:.3f} | {a.response_tokens:.1f} | {r.wall_time_s:.1f} |"
        )
    return "\n".join(lines)


def plot_compare(results: list[AlignResult], path: str | Path) -> None:
    """Bars of positive rate, mean reward and KL per model (the reference first)."""
    from kolm.plotting import setup_korean_font

    setup_korean_font()
    import matplotlib.pyplot as plt

    ref = results[0].before
    names = ["reference"] + [r.method for r in results]
    ms = [ref] + [r.after for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    for ax, key, title in (
        (axes[0], "positive_rate", "positive rate (긍정 비율)"),
        (axes[1], "mean_reward", "mean reward (평균 보상)"),
        (axes[2], "kl", "KL to reference (참조 모델과의 KL)"),
    ):
        values = [getattr(m, key) for m in ms]
        ax.bar(names, values, color=["#999999"] + ["#4878a8"] * len(results))
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.suptitle("alignment methods on the same prompts and budget (정렬 방법 비교)")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _judge(judge_cfg: Any, prompts: list[str], results: list[AlignResult]) -> dict[str, float]:
    """Pairwise LLM-judge win rate of each method against the reference (ties half), when an endpoint is set."""
    from kolm.evaluate.judge import JudgeClient, aggregate_pairwise, judge_pair

    client = JudgeClient(judge_cfg.base_url, judge_cfg.model, judge_cfg.api_key_env, judge_cfg.timeout)
    client.check()
    out = {}
    ref = results[0].before
    n = min(judge_cfg.max_items, len(prompts))
    for r in results:
        verdicts = [judge_pair(client, prompts[i], r.after.texts[i], ref.texts[i], judge_cfg.swap) for i in range(n)]
        agg = aggregate_pairwise(verdicts, (r.method, "reference"))
        out[r.method] = float(agg[f"win_rate_{r.method}"])
    return out


def run(ctx: StageContext) -> StageResult:
    """Run every method of `align.compare_methods` from the same policy and compare them."""
    cfg = ctx.cfg.align
    policy = policy_dir(cfg, ctx.stage_dir("pretrain"))
    reward = reward_spec(cfg, ctx.stage_dir("finetune"))
    device = stage_device(cfg, ctx)
    out = ctx.out / "compare"
    out.mkdir(parents=True, exist_ok=True)
    results: list[AlignResult] = []
    for method in cfg.compare_methods:
        ctx.log(f"align compare: {method}")
        results.append(
            align(
                cfg,
                method,
                policy=policy,
                reward=reward,
                out=out,
                seed=ctx.cfg.seed,
                device=device,
                progress=ctx.progress,
            )
        )
    for r in results:
        for p in dict.fromkeys(r.inputs):
            ctx.input(p)
    prompts: list[str] = results[0].details["eval_prompts"]
    judged = _judge(ctx.cfg.eval.judge, prompts, results) if ctx.cfg.eval.judge.base_url else {}
    table = compare_table(results, judged)
    plot_compare(results, out / "compare.png")
    samples = out / "samples.jsonl"
    samples.unlink(missing_ok=True)
    for i, p in enumerate(prompts):
        row: dict[str, Any] = {"prompt": p, "reference": results[0].before.texts[i]}
        row.update({r.method: r.after.texts[i] for r in results})
        append_jsonl(samples, row)
    shown = [
        "| prompt | reference | " + " | ".join(r.method for r in results) + " |",
        "|---" * (len(results) + 2) + "|",
    ]

    def cell(t: str) -> str:
        return t.replace("|", "\\|").replace("\n", " ").strip() or "(empty)"

    for i in range(min(cfg.samples_shown, len(prompts))):
        shown.append(
            f"| {cell(prompts[i])} | {cell(results[0].before.texts[i])} | "
            + " | ".join(cell(r.after.texts[i]) for r in results)
            + " |"
        )
    text = "\n".join(
        [
            "# Alignment methods compared (정렬 방법 비교)",
            "",
            f"Policy `{policy}`, reward `{reward}`; every method: {cfg.steps} steps × {cfg.batch_size} responses (pairs for DPO), "
            f"{len(prompts)} held-out prompts sampled at temperature {cfg.temperature} with the same seed.",
            "",
            table,
            "",
            "![comparison](compare.png)",
            "",
            "Samples side by side:",
            "",
            "\n".join(shown),
            "",
        ]
    )
    (out / "compare.md").write_text(text, encoding="utf-8")
    (out / "summary.md").write_text(text, encoding="utf-8")
    ref = results[0].before
    write_json(
        out / "compare.json",
        {
            "reference": ref.summary() if ref else None,
            "methods": {
                r.method: {
                    **(r.after.summary() if r.after else {}),
                    "win_rate": win_rate(r.after.rewards, ref.rewards) if r.after and ref else None,
                    "judge_win_rate": judged.get(r.method),
                    "wall_time_s": r.wall_time_s,
                }
                for r in results
            },
        },
    )
    metrics = {f"{r.method}.positive_rate": r.after.positive_rate for r in results if r.after}
    return StageResult(outputs={"compare": ctx.output(out / "compare.md")}, metrics=metrics)
