"""The run report: reads a run directory, writes report/report.md and a self-contained report.html.

It reads only files in the run directory, never stage code: the resolved
config, each stage's manifest (wall time, metrics, versions), every
`metrics.jsonl` (plotted against `step`), every `eval.json` (headline
numbers), and each stage's own `summary.md` (tables and charts the stage chose
to show). The HTML inlines its images, so it can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kolm.errors import KolmError
from kolm.stages import STAGES

__all__ = ["write_report", "read_metrics", "plot_metrics"]

_IMG = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_MAX_SUBPLOTS = 9


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; broken lines (a crash mid-write) are skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _series(rows: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Numeric columns as (steps, values), in first-seen order."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for i, row in enumerate(rows):
        step = row.get("step", i)
        if not isinstance(step, (int, float)):
            continue
        for key, value in row.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                continue
            xs, ys = out.setdefault(key, ([], []))
            xs.append(step)
            ys.append(value)
    return out


def _group(series: dict[str, Any]) -> dict[str, list[str]]:
    """Put train/val variants of a quantity on one axis (loss with val_loss)."""
    groups: dict[str, list[str]] = {}
    for key in series:
        base = re.sub(r"^(train|val|valid|eval|test)_", "", key)
        groups.setdefault(base, []).append(key)
    return groups


def plot_metrics(rows: list[dict[str, Any]], title: str, out_png: Path) -> Path | None:
    """Small multiples of every numeric metric against step; None when nothing is plottable."""
    series = _series(rows)
    series = {k: v for k, v in series.items() if len(v[0]) >= 2}
    if not series:
        return None
    from kolm.plotting import setup_korean_font

    setup_korean_font()
    import matplotlib.pyplot as plt

    groups = list(_group(series).items())[:_MAX_SUBPLOTS]
    cols = min(3, len(groups))
    nrows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.9 * nrows), dpi=100, squeeze=False)
    for ax, (base, keys) in zip(axes.flat, groups):
        for key in keys:
            xs, ys = series[key]
            ax.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set_title(base)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) < 60 else text[:57] + "..."
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _flat_numbers(data: Any, prefix: str = "", limit: int = 40) -> list[tuple[str, Any]]:
    """Scalar leaves of nested JSON as dotted keys (headline numbers of eval.json)."""
    out: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _flat_numbers(value, f"{prefix}{key}.", limit)
    elif isinstance(data, (int, float, str)) and not isinstance(data, bool):
        if not isinstance(data, str) or len(data) < 40:
            out.append((prefix.rstrip("."), data))
    return out[:limit]


def _rewrite_images(text: str, src_dir: Path, report_dir: Path) -> str:
    """Point image links of a stage's summary.md at the right files from report/."""

    def repl(m: re.Match[str]) -> str:
        target = m.group(2)
        if re.match(r"^[a-z]+:", target):
            return m.group(0)
        path = (src_dir / target).resolve()
        try:
            rel = Path("..") / path.relative_to(report_dir.parent.resolve())
        except ValueError:
            rel = path
        return f"![{m.group(1)}]({rel.as_posix()})"

    return _IMG.sub(repl, text)


def _demote(text: str, levels: int = 2) -> str:
    return re.sub(r"^(#+)", lambda m: "#" * min(6, len(m.group(1)) + levels), text, flags=re.M)


def _has_summary(folder: Path, stage_dir: Path) -> bool:
    """Whether `folder` or a parent up to the stage folder has a summary.md."""
    folder, stage_dir = folder.resolve(), stage_dir.resolve()
    while True:
        if (folder / "summary.md").exists():
            return True
        if folder == stage_dir or folder.parent == folder:
            return False
        folder = folder.parent


def _manifests(stage_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(stage_dir.glob("manifest*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            continue
    return out


def _stage_dirs(run_dir: Path) -> list[tuple[str, Path]]:
    """Stage folders in table order, then any other folder that has a manifest or metrics."""
    known = [(s.name, run_dir / s.dir) for s in STAGES if (run_dir / s.dir).is_dir()]
    seen = {p.resolve() for _, p in known}
    for child in sorted(run_dir.iterdir()):
        if child.suffix in (".staging", ".previous"):
            continue  # a stage's work in progress or its last failed attempt (shown in the stage table)
        if child.is_dir() and child.name != "report" and child.resolve() not in seen:
            if any(child.glob("manifest*.json")) or any(child.rglob("metrics.jsonl")):
                known.append((child.name, child))
    return known


def build_markdown(run_dir: Path) -> str:
    """The report as markdown (images referenced relative to run_dir/report)."""
    run_dir = Path(run_dir)
    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# kolm run report: {run_dir.name}", ""]
    parts.append(f"Run directory: `{run_dir}` · written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}")
    stages = _stage_dirs(run_dir)
    timing_rows, versions, host = [], {}, {}
    for name, path in stages:
        for m in _manifests(path):
            label = name + (f" {m['action']}" if m.get("action") else "")
            metrics = m.get("metrics") or {}
            headline = ", ".join(
                f"{k}={_fmt(v)}" for k, v in list(metrics.items())[:5] if not isinstance(v, (dict, list))
            )
            timing_rows.append([label, m.get("status", "?"), m.get("wall_time_s", ""), m.get("started", ""), headline])
            versions = m.get("versions") or versions
            host = m.get("host") or host
    for stage in STAGES:  # a failed later attempt keeps the earlier outputs; say so next to them
        for m in _manifests(run_dir / f"{stage.dir}.staging"):
            if m.get("status") == "failed":
                label = stage.name + (f" {m['action']}" if m.get("action") else "")
                timing_rows.append(
                    [
                        label,
                        "failed (earlier outputs kept)",
                        m.get("wall_time_s", ""),
                        m.get("started", ""),
                        str(m.get("error", ""))[:120],
                    ]
                )
    parts += ["", "## Stages (단계)", ""]
    parts.append(
        _table(["stage", "status", "wall time (s)", "started", "metrics"], timing_rows)
        if timing_rows
        else "No stage has run yet."
    )
    for name, path in stages:
        section = [f"## {name}", ""]
        for mfile in sorted(path.rglob("metrics.jsonl")):
            rows = read_metrics(mfile)
            rel = mfile.parent.relative_to(run_dir).as_posix()
            png = report_dir / f"{rel.replace('/', '_')}_metrics.png"
            if plot_metrics(rows, f"{rel} (metrics.jsonl)", png):
                section.append(f"![{rel} metrics]({png.name})")
                last = {k: v for k, v in rows[-1].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                section += [
                    "",
                    f"Last logged values in `{rel}/metrics.jsonl`:",
                    "",
                    _table(list(last), [list(last.values())]),
                    "",
                ]
        for efile in sorted(path.rglob("eval.json")):
            if _has_summary(efile.parent, path):
                continue  # the stage already shows these numbers in its own summary
            try:
                data = json.loads(efile.read_text(encoding="utf-8"))
            except ValueError:
                continue
            flat = _flat_numbers(data)
            if flat:
                section += [
                    f"Headline numbers from `{efile.relative_to(run_dir).as_posix()}`:",
                    "",
                    _table(["metric", "value"], [list(r) for r in flat]),
                    "",
                ]
        for sfile in sorted(path.rglob("summary.md")):
            text = sfile.read_text(encoding="utf-8", errors="replace")
            section += [_demote(_rewrite_images(text, sfile.parent, report_dir)), ""]
        if len(section) > 2:
            parts += [""] + section
    cfg = run_dir / "config.yaml"
    if cfg.exists():
        parts += ["", "## Configuration (설정)", "", "```yaml", cfg.read_text(encoding="utf-8").rstrip(), "```"]
    if versions or host:
        env = [[k, v] for k, v in {**versions, **{f"host.{k}": v for k, v in host.items() if k != "argv"}}.items()]
        parts += ["", "## Environment (환경)", "", _table(["item", "value"], env)]
    return "\n".join(parts) + "\n"


def _inline_images(html_text: str, report_dir: Path) -> str:
    def repl(m: re.Match[str]) -> str:
        src = html.unescape(m.group(1))
        path = (report_dir / src).resolve()
        if not path.is_file():
            return m.group(0)
        mime = "image/svg+xml" if path.suffix == ".svg" else f"image/{path.suffix.lstrip('.').lower() or 'png'}"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:{mime};base64,{data}"'

    return re.sub(r'src="([^"]+)"', repl, html_text)


_CSS = """
body{font-family:'Noto Sans KR','Apple SD Gothic Neo','Malgun Gothic',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.5}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.85em}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #ccc;margin-top:2em}
"""


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write report/report.md and report/report.html for a run directory; return their paths."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KolmError(f"run directory not found: {run_dir} (run `kolm pipeline --config tiny` first)")
    import markdown

    md_text = build_markdown(run_dir)
    report_dir = run_dir / "report"
    md_path = report_dir / "report.md"
    md_path.write_text(md_text, encoding="utf-8")
    body = markdown.markdown(md_text, extensions=["tables", "fenced_code"])
    body = _inline_images(body, report_dir)
    page = (
        '<!DOCTYPE html>\n<html lang="ko"><head><meta charset="utf-8">'
        f"<title>kolm report: {html.escape(run_dir.name)}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
    html_path = report_dir / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return {"md": md_path, "html": html_path}
