"""Exact resume: a run interrupted and resumed logs the same losses as an uninterrupted one (CPU, fp32)."""

from __future__ import annotations

import json

import pytest

import kolm.train.stage as stage_mod
from kolm.run import run_stage

STEPS = {"pretrain.max_steps": 10, "pretrain.save_every": 3, "pretrain.eval_every": 5, "pretrain.keep_last": 1}


class Interrupt(Exception):
    pass


def _losses(run_dir):
    rows = [json.loads(x) for x in (run_dir / "pretrain" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["step"]: (r.get("loss"), r.get("val_loss")) for r in rows}


def test_interrupted_and_resumed_run_matches_uninterrupted(tiny_run, tmp_path, monkeypatch):
    full = tiny_run(tmp_path / "full", **STEPS)
    run_stage(full, "pretrain")

    part = tiny_run(tmp_path / "part", **STEPS)
    real_train = stage_mod.train

    def interrupted_train(*args, **kwargs):
        def stop(model, state):
            if state.step == 7:  # after the step-6 checkpoint, before the next one
                raise Interrupt

        kwargs["hooks"] = [*kwargs.get("hooks", []), stop]
        return real_train(*args, **kwargs)

    monkeypatch.setattr(stage_mod, "train", interrupted_train)
    with pytest.raises(Interrupt):
        run_stage(part, "pretrain")
    monkeypatch.setattr(stage_mod, "train", real_train)
    ckpts = sorted(p.name for p in (part.run_path / "pretrain" / "checkpoints").glob("step-*"))
    assert ckpts == ["step-6"] or "step-6" in ckpts

    run_stage(part, "pretrain")  # pretrain.resume=auto (the default)
    a, b = _losses(full.run_path), _losses(part.run_path)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    for step in range(1, 11):
        assert a[step] == b[step], f"step {step}: {a[step]} != {b[step]}"
