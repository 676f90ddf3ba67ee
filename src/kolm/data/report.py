"""Curation report: curation_report.json, curation_report.md (= summary.md) and the length histogram PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_report", "funnel_markdown"]


def _n(x: Any) -> str:
    return "" if x is None else f"{x:,}"


def funnel_markdown(report: dict[str, Any]) -> str:
    """The curation funnel as a markdown table (documents and characters in/out per step)."""
    lines = [
        "| step | docs in | docs out | removed | chars in | chars out |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["funnel"]:
        lines.append(
            f"| {row['step']} | {_n(row['docs_in'])} | {_n(row['docs_out'])} | {_n(row['docs_in'] - row['docs_out'])} "
            f"| {_n(row['chars_in'])} | {_n(row['chars_out'])} |"
        )
    return "\n".join(lines)


def _histogram_png(report: dict[str, Any], path: Path) -> bool:
    try:
        from kolm.plotting import new_figure
    except ImportError:
        return False
    hist = report["length_histogram"]
    bins = hist["bins"]
    labels = [f"{b}+" if i == len(bins) - 1 else f"{b}-{bins[i + 1] - 1}" for i, b in enumerate(bins)]
    fig, ax = new_figure(7, 3.5)
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], hist["before"], width=0.4, label="입력 (before)")
    ax.bar([i + 0.2 for i in x], hist["after"], width=0.4, label="정제 후 (after)")
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("document length (characters)")
    ax.set_ylabel("documents")
    ax.set_title("문서 길이 분포 / length histogram")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return True


def write_report(report: dict[str, Any], out: Path) -> None:
    """Write curation_report.json/.md, summary.md (same markdown) and length_hist.png into `out`."""
    from kolm.files import write_json

    out = Path(out)
    write_json(out / "curation_report.json", report)
    has_png = _histogram_png(report, out / "length_hist.png")
    md = ["# Data curation (데이터 정제)", ""]
    md += [
        "Sources: "
        + ", ".join(f"{k} ({v['docs']:,} docs, weight {v['weight']})" for k, v in report["sources"].items()),
        "",
    ]
    md += ["## Funnel", "", funnel_markdown(report), ""]
    sp = report["split"]
    md += [
        f"Split (seed {sp['seed']}): train {sp['train_docs']:,} docs / {sp['train_chars']:,} chars, "
        f"validation {sp['validation_docs']:,} docs / {sp['validation_chars']:,} chars.",
        "",
    ]
    md += ["## Removed documents by reason", "", "| reason | documents | examples |", "| --- | ---: | --- |"]
    for reason, n in sorted(report["removed"].items(), key=lambda kv: -kv[1]):
        exs = report["examples"].get(reason, [])
        cell = "<br>".join(f"`{e['text']}` ({e['why']})".replace("|", "\\|") for e in exs)
        md.append(f"| {reason} | {n:,} | {cell} |")
    md += [""]
    if report["pii"]:
        md += ["## PII redacted", "", "| kind | replaced |", "| --- | ---: |"]
        md += [f"| {k} | {v:,} |" for k, v in sorted(report["pii"].items())]
        md += [""]
    if report.get("boilerplate_lines_removed"):
        md += [f"Boilerplate lines removed from kept documents: {report['boilerplate_lines_removed']:,}.", ""]
    nd = report["near_dedup"]
    md += [
        "## Near-duplicates (MinHash + LSH)",
        "",
        f"{nd['clusters']:,} clusters, {nd['duplicates_removed']:,} documents removed "
        f"(char {nd['ngram']}-grams, {nd['num_perm']} permutations, {nd['bands']} bands, threshold {nd['threshold']}).",
        "",
    ]
    for k, cluster in enumerate(nd["examples"], 1):
        md.append(f"{k}. " + " ／ ".join(f"`{t}`" for t in cluster))
    md += [""]
    if report["issues"]:
        md += ["## Input problems (skipped, counted)", "", "| problem | count |", "| --- | ---: |"]
        md += [f"| {k} | {v:,} |" for k, v in report["issues"].items()]
        md += [""]
    t = report["timing"]
    md += [
        "## Timing",
        "",
        f"Wall {t['wall_s']} s with {t['num_proc']} processes. CPU seconds per step: "
        + ", ".join(f"{k} {v}" for k, v in t["cpu_s"].items()),
        "",
    ]
    if has_png:
        md += ["![length histogram](length_hist.png)", ""]
    text = "\n".join(md)
    (out / "curation_report.md").write_text(text, encoding="utf-8")
    (out / "summary.md").write_text(text, encoding="utf-8")
