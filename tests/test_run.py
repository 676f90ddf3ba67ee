"""Run directory: manifests, skip when up to date, --force, failure records, seeding, devices."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

import kolm.stages as stages_mod
from kolm.config import load_config
from kolm.context import StageResult
from kolm.errors import KolmError
from kolm.files import hash_path
from kolm.run import is_up_to_date, read_manifest, run_stage, staging_dir
from kolm.runtime import resolve_device, seed_everything
from kolm.stages import Stage

CALLS: list[str] = []


def fake_stage(ctx):
    """A stage that reads one external file and writes one output."""
    CALLS.append(ctx.stage.name)
    src = ctx.input(ctx.cfg.data.sources[0].path)
    out = ctx.out / "copy.txt"
    out.write_text(src.read_text(encoding="utf-8") * 2, encoding="utf-8")
    with ctx.task("copy", total=1) as t:
        t.advance()
    return StageResult(outputs={"copy": "fake/copy.txt"}, metrics={"chars": len(out.read_text(encoding="utf-8"))})


def broken_stage(ctx):
    raise KolmError("the input is empty; add documents")


@pytest.fixture
def fake_table(monkeypatch):
    table = (
        Stage("data", 2, "fake", f"{__name__}:fake_stage", "fake", ("data",), "copy.txt"),
        Stage("pretrain", 5, "broken", f"{__name__}:broken_stage", "broken", ("pretrain",), "nothing"),
    )
    monkeypatch.setattr(stages_mod, "STAGES", table)
    CALLS.clear()
    return table


def _cfg(tmp_path, text="안녕하세요", **over):
    src = tmp_path / "in.txt"
    src.write_text(text, encoding="utf-8")
    overrides = [f"data.sources=[{{kind: file, path: '{src}'}}]", "pipeline.stages=[data, pretrain]"] + [
        f"{k}={v}" for k, v in over.items()
    ]
    return load_config("tiny", overrides, run_dir=tmp_path / "run"), src


def test_manifest_records_inputs_outputs_metrics(tmp_path, fake_table):
    cfg, src = _cfg(tmp_path)
    result = run_stage(cfg, "data")
    assert result.metrics == {"chars": 10}
    m = read_manifest(tmp_path / "run" / "fake")
    assert m["status"] == "done" and m["stage"] == "data"
    assert m["inputs"] == {str(src): hash_path(src)}
    assert m["outputs"] == {"copy": "fake/copy.txt"} and m["wall_time_s"] >= 0
    assert "torch" in m["versions"] and m["config"]["data"]["sources"][0]["path"] == str(src)
    assert (tmp_path / "run" / "config.yaml").exists()


def test_skip_when_unchanged_and_rerun_on_force_config_or_input_change(tmp_path, fake_table):
    cfg, src = _cfg(tmp_path)
    run_stage(cfg, "data")
    assert run_stage(cfg, "data") is None and CALLS == ["data"]
    assert run_stage(cfg, "data", force=True) is not None and len(CALLS) == 2
    src.write_text("바뀐 내용", encoding="utf-8")
    fresh, why = is_up_to_date(cfg, stages_mod.STAGES[0])
    assert not fresh and why.startswith("input changed")
    run_stage(cfg, "data")
    assert len(CALLS) == 3
    cfg2 = replace(cfg, seed=cfg.seed + 1)
    assert is_up_to_date(cfg2, stages_mod.STAGES[0]) == (False, "config changed")
    # A config section the stage does not depend on does not re-run it.
    cfg3 = replace(cfg, pretrain=replace(cfg.pretrain, max_steps=cfg.pretrain.max_steps + 1))
    assert is_up_to_date(cfg3, stages_mod.STAGES[0])[0]
    (tmp_path / "run" / "fake" / "copy.txt").unlink()
    assert is_up_to_date(cfg, stages_mod.STAGES[0]) == (False, "output missing: fake/copy.txt")


def test_failed_stage_is_recorded_and_not_skipped(tmp_path, fake_table):
    cfg, _ = _cfg(tmp_path)
    with pytest.raises(KolmError, match="input is empty"):
        run_stage(cfg, "pretrain")
    assert read_manifest(tmp_path / "run" / "broken") is None  # nothing was put in place
    m = read_manifest(staging_dir(tmp_path / "run", stages_mod.STAGES[1]))  # the failure is recorded in staging
    assert m["status"] == "failed" and "input is empty" in m["error"]
    assert not is_up_to_date(cfg, stages_mod.STAGES[1])[0]


def flaky_stage(ctx):
    """Writes a partial output, then fails when the source says so."""
    src = ctx.input(ctx.cfg.data.sources[0].path).read_text(encoding="utf-8")
    (ctx.out / "copy.txt").write_text("partial", encoding="utf-8")
    if "FAIL" in src:
        raise KolmError("induced failure")
    (ctx.out / "copy.txt").write_text(src, encoding="utf-8")
    return StageResult(outputs={"copy": ctx.output(ctx.out / "copy.txt")})


def test_failed_rerun_keeps_previous_outputs_manifest_and_config(tmp_path, monkeypatch):
    table = (Stage("data", 2, "flaky", f"{__name__}:flaky_stage", "flaky", ("data",), "copy.txt"),)
    monkeypatch.setattr(stages_mod, "STAGES", table)
    src = tmp_path / "in.txt"
    src.write_text("좋은 입력", encoding="utf-8")
    sources = f"data.sources=[{{kind: file, path: '{src}'}}]"
    cfg = load_config("tiny", [sources, "pipeline.stages=[data]"], run_dir=tmp_path / "run")
    run_stage(cfg, "data")
    out = tmp_path / "run" / "flaky"
    good = (out / "copy.txt").read_text(encoding="utf-8")
    manifest = (out / "manifest.json").read_text(encoding="utf-8")
    config = (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8")
    src.write_text("FAIL", encoding="utf-8")
    bad = load_config("tiny", [sources, "pipeline.stages=[data]", "seed=99"], run_dir=tmp_path / "run")
    with pytest.raises(KolmError, match="induced failure"):
        run_stage(bad, "data", force=True)
    assert (out / "copy.txt").read_text(encoding="utf-8") == good
    assert (out / "manifest.json").read_text(encoding="utf-8") == manifest
    assert (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8") == config
    assert read_manifest(staging_dir(tmp_path / "run", table[0]))["status"] == "failed"
    src.write_text("fixed", encoding="utf-8")
    run_stage(bad, "data", force=True)  # a later success replaces the outputs and clears the staging folder
    assert (out / "copy.txt").read_text(encoding="utf-8") == "fixed"
    assert not staging_dir(tmp_path / "run", table[0]).exists()


def test_unknown_action_is_a_user_error(tmp_path, fake_table):
    cfg, _ = _cfg(tmp_path)
    with pytest.raises(KolmError, match="has no action 'compare'"):
        run_stage(cfg, "data", action="compare")


def test_missing_input_is_a_user_error(tmp_path, fake_table):
    cfg, src = _cfg(tmp_path)
    src.unlink()
    with pytest.raises(KolmError, match="input not found"):
        run_stage(cfg, "data")


def test_hash_path_covers_folder_content_and_names(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text("가", encoding="utf-8")
    h1 = hash_path(d)
    (d / "a.txt").write_text("나", encoding="utf-8")
    h2 = hash_path(d)
    (d / "a.txt").rename(d / "b.txt")
    assert len({h1, h2, hash_path(d)}) == 3


def test_seed_everything_is_deterministic():
    import numpy as np
    import torch

    seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item())


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cpu", "cuda", "mps"}
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(KolmError, match="CUDA is not available"):
            resolve_device("cuda")
