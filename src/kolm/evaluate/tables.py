"""The evaluation results as Markdown (eval.md, summary.md), headline metrics, and the few-shot chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kolm.metrics.classification import confusion_markdown

__all__ = [
    "lm_table",
    "fewshot_table",
    "generation_table",
    "variations_table",
    "classify_section",
    "judge_section",
    "fewshot_plot",
    "markdown",
    "headline",
]


def _f(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else ("" if v is None else str(v))


def _cell(text: str, limit: int = 300) -> str:
    """Text safe inside a Markdown table cell."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>") or "(빈 출력)"


def lm_table(lm: dict[str, Any]) -> str:
    head = "| source | docs | tokens | perplexity | bits/char | bits/byte | window / stride |\n|---|---|---|---|---|---|---|"
    row = (
        f"| {lm.get('source', '')} | {lm['docs']} | {lm['tokens']} | {lm['perplexity']:.3f} | {lm['bpc']:.4f} | "
        f"{lm['bpb']:.4f} | {lm['max_length']} / {lm['stride']} |"
    )
    return head + "\n" + row


def fewshot_table(fs: dict[str, Any]) -> str:
    """Rows: model × k; accuracy and macro-F1, raw and calibrated."""
    lines = [
        "| model | params | k | accuracy | macro-F1 | calibrated acc. | calibrated macro-F1 | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in fs["models"]:
        for r in m["results"]:
            lines.append(
                f"| {m['name']} | {m['params']:,} | {r['k']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
                f"{_f(r.get('calibrated_accuracy'), 3)} | {_f(r.get('calibrated_macro_f1'), 3)} | {r['n']} |"
            )
    return "\n".join(lines)


def generation_table(gen: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | n | BLEU | chrF | ROUGE-1 | ROUGE-2 | ROUGE-L |", "|---|---|---|---|---|---|---|"]
    for name, m in gen.items():
        lines.append(
            f"| {name} | {m['n']} | {m['bleu']:.2f} | {m['chrf']:.2f} | {m['rouge1']:.3f} | {m['rouge2']:.3f} | {m['rougeL']:.3f} |"
        )
    first = next(iter(gen.values()), None)
    if first:
        lines += [
            "",
            f"BLEU tokenization: `{first['bleu_tokenize']}` (`{first['bleu_signature']}`); "
            f"chrF `{first['chrf_signature']}`; ROUGE tokens: `{first['rouge_tokenizer']}`.",
        ]
    return "\n".join(lines)


def variations_table(rows: list[dict[str, Any]], variants: list[str]) -> str:
    """One row per prompt, one column per prompt variation (sampled outputs side by side)."""
    lines = ["| prompt | " + " | ".join(variants) + " |", "|" + "---|" * (len(variants) + 1)]
    for r in rows:
        lines.append(
            f"| {_cell(r['prompt'], 120)} | " + " | ".join(_cell(r["outputs"].get(v, "")) for v in variants) + " |"
        )
    return "\n".join(lines)


def classify_section(rep: dict[str, Any]) -> str:
    per = " · ".join(
        f"{k}: P={v['precision']:.3f} R={v['recall']:.3f} F1={v['f1']:.3f} (n={v['support']})"
        for k, v in rep["per_class"].items()
    )
    return "\n".join(
        [
            f"Source: {rep.get('source', '')} · n = {rep['n']} · **accuracy {rep['accuracy']:.4f}** · **macro-F1 {rep['macro_f1']:.4f}**",
            "",
            per,
            "",
            confusion_markdown(rep),
        ]
    )


def judge_section(j: dict[str, Any]) -> str:
    agg = j["aggregate"]
    if j["mode"] == "pairwise":
        a, b = j["systems"]
        return "\n".join(
            [
                f"Judge `{j['model']}` at `{j['base_url']}`, pairwise, position swap: {'on' if j['swap'] else 'off'}.",
                "",
                f"| {a} wins | {b} wins | ties | inconsistent (position bias) | n | {a} win rate |",
                "|---|---|---|---|---|---|",
                f"| {agg['wins_' + a]} | {agg['wins_' + b]} | {agg['ties']} | {agg['inconsistent']} | {agg['n']} | {agg['win_rate_' + a]:.3f} |",
            ]
        )
    lines = [
        f"Judge `{j['model']}` at `{j['base_url']}`, rubric 1–5.",
        "",
        "| system | mean | 1 | 2 | 3 | 4 | 5 | unparsed | n |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in agg.items():
        c = s["counts"]
        lines.append(
            f"| {name} | {_f(s['mean'], 3)} | {c['1']} | {c['2']} | {c['3']} | {c['4']} | {c['5']} | {s['unparsed']} | {s['n']} |"
        )
    return "\n".join(lines)


def fewshot_plot(fs: dict[str, Any], out_png: Path) -> Path | None:
    """Accuracy against k for every model (solid raw, dashed calibrated)."""
    try:
        from kolm.plotting import new_figure
    except ImportError:
        return None
    import matplotlib.pyplot as plt

    fig, ax = new_figure(6.0, 3.5)
    for m in fs["models"]:
        ks = [r["k"] for r in m["results"]]
        line = ax.plot(ks, [r["accuracy"] for r in m["results"]], marker="o", label=f"{m['name']} ({m['params']:,})")[0]
        if any(r.get("calibrated_accuracy") is not None for r in m["results"]):
            ax.plot(
                ks,
                [r.get("calibrated_accuracy") for r in m["results"]],
                marker="x",
                linestyle="--",
                color=line.get_color(),
                label=f"{m['name']} 보정",
            )
    ax.set_xlabel("k (예시 개수)")
    ax.set_ylabel("정확도")
    ax.set_title("Few-shot 감성 분류: k와 모델 크기에 따른 정확도")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight", dpi=110)
    plt.close(fig)
    return out_png


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """Flat headline metrics of an eval.json (for the stage manifest)."""
    m: dict[str, Any] = {}
    if "lm" in res:
        m.update({"lm.perplexity": round(res["lm"]["perplexity"], 4), "lm.bpc": round(res["lm"]["bpc"], 5)})
    for model in res.get("fewshot", {}).get("models", [])[:1]:
        for r in model["results"]:
            m[f"fewshot.k{r['k']}.accuracy"] = round(r["accuracy"], 4)
            if r.get("calibrated_accuracy") is not None:
                m[f"fewshot.k{r['k']}.calibrated_accuracy"] = round(r["calibrated_accuracy"], 4)
    for name, g in res.get("generation", {}).items():
        key = "sft" if name == "sft" else "lm"
        for k in ("bleu", "chrf", "rougeL"):
            m[f"generation.{key}.{k}"] = round(g[k], 4)
    if c := res.get("finetuned", {}).get("classify"):
        m.update({"classify.accuracy": round(c["accuracy"], 4), "classify.macro_f1": round(c["macro_f1"], 4)})
    for row in res.get("klue", {}).get("rows", []):
        for metric in row["metrics"] if row["status"] == "ok" else []:
            m[f"klue.{row['task']}.{metric}"] = row["scores"][metric]
    if j := res.get("judge"):
        if j["mode"] == "pairwise":
            m[f"judge.win_rate_{j['systems'][0]}"] = round(j["aggregate"][f"win_rate_{j['systems'][0]}"], 4)
        else:
            for s, a in j["aggregate"].items():
                m[f"judge.{s}.mean"] = a["mean"]
    return m


def klue_section(suite: dict[str, Any]) -> str:
    """The KLUE benchmark table (`kolm eval --suite klue`) with how to read it."""
    from kolm.evaluate.klue_suite import klue_table

    return "\n".join(
        [
            "## KLUE benchmark (KLUE 벤치마크)",
            "",
            "Each task's official dev-set metric (%) of the model fine-tuned on it, as in the KLUE paper's table. "
            f"Data: `{suite.get('data_dir') or 'not set'}`.",
            "",
            klue_table(suite),
        ]
    )


def markdown(res: dict[str, Any], plot: Path | None, full: bool) -> str:
    """eval.md (full, with every variation) or summary.md (tables, a few samples)."""
    params = f" · {res['params']:,} parameters" if "params" in res else ""
    device = f" · device {res['device']}" if "device" in res else ""
    parts = ["# 평가 (Evaluation)", "", f"Model: `{res['model']}`{params}{device}"]
    if "lm" in res:
        parts += [
            "",
            "## Language modelling (언어 모델링)",
            "",
            lm_table(res["lm"]),
            "",
            "Bits per character/byte do not depend on the tokenizer; perplexity does.",
        ]
    if "fewshot" in res:
        fs = res["fewshot"]
        verb = ", ".join(f"{k} → {v}" for k, v in fs["verbalizers"].items())
        parts += [
            "",
            "## Few-shot in-context classification (퓨샷 분류)",
            "",
            f"Template `{fs['template']}`; label words {verb}; prediction = the label word with the highest log-likelihood. "
            "Calibrated: divided by the prior measured on content-free inputs.",
            "",
            fewshot_table(fs),
        ]
        if plot:
            parts += ["", f"![few-shot accuracy]({plot.name})"]
        if len(fs["models"]) == 1:
            parts += ["", "To see the effect of model size, list more model dirs in `eval.fewshot_models`."]
    if res.get("generation"):
        parts += ["", "## Generation metrics (생성 평가)", "", generation_table(res["generation"])]
    if res.get("variations"):
        parts += [
            "",
            "## Prompt variations (프롬프트 변형)",
            "",
            "The same questions asked three ways; same seed for every variant, sampled outputs side by side.",
        ]
        for sys_name, rows in res["variations"].items():
            parts += ["", f"**{sys_name}**", "", variations_table(rows if full else rows[:2], res["variants"])]
        if not full:
            parts += ["", "All prompts and outputs: `eval.md`, `samples.jsonl`."]
    if c := res.get("finetuned", {}).get("classify"):
        parts += ["", "## Fine-tuned classifier (미세조정 분류기)", "", classify_section(c)]
    if k := res.get("klue"):
        parts += ["", klue_section(k)]
    if j := res.get("judge"):
        parts += ["", "## LLM-as-judge (LLM 심사)", "", judge_section(j)]
    if sf := res.get("safety"):
        from kolm.evaluate.safety import safety_table

        parts += [
            "",
            "## Safety probes (안전성 점검)",
            "",
            f"Risky requests must be declined or redirected, benign look-alikes answered; probes `{sf['source']}`, "
            f"reward model `{sf.get('reward_model') or 'none'}`. Answers: `samples.jsonl` (kind safety).",
            "",
            safety_table(sf["models"]),
        ]
    if res.get("notes"):
        parts += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(parts) + "\n"
