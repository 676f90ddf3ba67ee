"""The pipeline: table order, skipping, stopping on the first failure, the report at the end."""

from __future__ import annotations

import pytest

import kolm.stages as stages_mod
from kolm.config import load_config
from kolm.pipeline import PipelineError, run_pipeline
from kolm.run import StageResult, read_manifest
from kolm.stages import Stage

ORDER: list[str] = []


def first(ctx):
    ORDER.append("first")
    (ctx.out / "a.txt").write_text("가나다", encoding="utf-8")
    return StageResult(outputs={"a": "one/a.txt"}, metrics={"n": 3})


def second(ctx):
    ORDER.append("second")
    ctx.input(ctx.stage_dir("data") / "a.txt")
    if ctx.cfg.seed == 99:
        raise ValueError("boom")
    return StageResult(metrics={"ok": 1})


@pytest.fixture
def table(monkeypatch):
    t = (
        Stage("data", 2, "first", f"{__name__}:first", "one", ("data",), "a.txt"),
        Stage("pretrain", 5, "second", f"{__name__}:second", "two", ("pretrain",), "nothing"),
    )
    monkeypatch.setattr(stages_mod, "STAGES", t)
    ORDER.clear()


def test_runs_in_table_order_skips_when_fresh_and_writes_report(tmp_path, table):
    # The config lists stages in reverse; the table's order wins.
    cfg = load_config("tiny", ["pipeline.stages=[pretrain, data]"], run_dir=tmp_path / "r")
    results = run_pipeline(cfg)
    assert ORDER == ["first", "second"] and results["data"].metrics == {"n": 3}
    assert (tmp_path / "r" / "report" / "report.html").exists()
    results = run_pipeline(cfg)
    assert results == {"data": None, "pretrain": None} and ORDER == ["first", "second"]
    run_pipeline(cfg, force=True)
    assert ORDER == ["first", "second"] * 2


def test_stops_on_first_failure_and_keeps_finished_stages(tmp_path, table):
    cfg = load_config(
        "tiny", ["pipeline.stages=[data, pretrain]", "seed=99", "pipeline.report=false"], run_dir=tmp_path / "r"
    )
    with pytest.raises(PipelineError, match="stage 'pretrain' failed with ValueError: boom"):
        run_pipeline(cfg)
    assert read_manifest(tmp_path / "r" / "one")["status"] == "done"
    assert read_manifest(tmp_path / "r" / "two") is None  # nothing was put in place
    assert read_manifest(tmp_path / "r" / "two.staging")["status"] == "failed"
    fixed = load_config(
        "tiny", ["pipeline.stages=[data, pretrain]", "seed=99", "pipeline.report=false"], run_dir=tmp_path / "r"
    )
    ORDER.clear()
    with pytest.raises(PipelineError):
        run_pipeline(fixed)
    assert ORDER == ["second"]  # the finished stage was reused, only the failed one re-ran
