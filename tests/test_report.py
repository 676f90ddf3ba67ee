"""The report reads a run directory only: plots, tables, summaries, self-contained HTML."""

from __future__ import annotations

import json

import pytest

from kolm.errors import KolmError
from kolm.report import read_metrics, write_report


def _synthetic_run(root):
    run = root / "runs" / "demo"
    (run / "pretrain").mkdir(parents=True)
    (run / "data").mkdir()
    (run / "config.yaml").write_text("name: demo\nseed: 1\n", encoding="utf-8")
    manifest = {
        "stage": "pretrain",
        "action": None,
        "status": "done",
        "wall_time_s": 12.5,
        "started": "2026-01-01T00:00:00+00:00",
        "metrics": {"val_bpc": 1.23, "val_loss": 3.2},
        "versions": {"python": "3.11", "torch": "2.13"},
        "host": {"cpus": 2},
    }
    (run / "pretrain" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    lines = [json.dumps({"step": s, "loss": 5 - s * 0.1, "lr": 0.001}) for s in range(1, 11)]
    lines.insert(3, "{broken line")
    lines += [json.dumps({"step": 10, "val_loss": 4.1, "val_bpc": 1.5}), json.dumps({"step": 20, "val_loss": 3.9})]
    (run / "pretrain" / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")
    (run / "data" / "manifest.json").write_text(
        json.dumps({**manifest, "stage": "data", "metrics": {"docs_out": 99}}), encoding="utf-8"
    )
    from kolm.plotting import new_figure

    fig, ax = new_figure()
    ax.bar(["원문", "정제 후"], [120, 99])
    fig.savefig(run / "data" / "funnel.png")
    (run / "data" / "summary.md").write_text(
        "# 정제 결과\n\n| 단계 | 문서 |\n|---|---|\n| 입력 | 120 |\n\n![깔때기](funnel.png)\n", encoding="utf-8"
    )
    (run / "eval").mkdir()
    (run / "eval" / "eval.json").write_text(
        json.dumps({"lm": {"perplexity": 31.4, "bpc": 1.7}, "samples": [1, 2]}), encoding="utf-8"
    )
    return run


def test_report_from_synthetic_run(tmp_path):
    run = _synthetic_run(tmp_path)
    paths = write_report(run)
    md = paths["md"].read_text(encoding="utf-8")
    assert "| pretrain | done | 12.5 |" in md
    assert "![pretrain metrics](pretrain_metrics.png)" in md
    assert (run / "report" / "pretrain_metrics.png").stat().st_size > 5000
    assert "### 정제 결과" in md and "| 입력 | 120 |" in md  # stage summary embedded, headings demoted
    assert "(../data/funnel.png)" in md  # image links rewritten relative to report/
    assert "| lm.perplexity | 31.4 |" in md  # eval.json headline numbers
    assert "name: demo" in md and "| torch | 2.13 |" in md
    html = paths["html"].read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2  # self-contained: both images inlined
    assert "<table>" in html and 'lang="ko"' in html


def test_metrics_reader_skips_broken_lines(tmp_path):
    run = _synthetic_run(tmp_path)
    rows = read_metrics(run / "pretrain" / "metrics.jsonl")
    assert len(rows) == 12 and rows[0]["step"] == 1


def test_report_of_missing_run_dir_is_a_user_error(tmp_path):
    with pytest.raises(KolmError, match="run directory not found"):
        write_report(tmp_path / "nope")


def test_report_of_empty_run_dir(tmp_path):
    paths = write_report(tmp_path)
    assert "No stage has run yet" in paths["md"].read_text(encoding="utf-8")
