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
    real_train, real_adamw = stage_mod.train, stage_mod.build_adamw

    def interrupted_train(*args, **kwargs):
        def stop(model, state):
            if state.step == 7:  # after the step-6 checkpoint, before the next one
                raise Interrupt

        kwargs["hooks"] = [*kwargs.get("hooks", []), stop]
        return real_train(*args, **kwargs)

    monkeypatch.setattr(stage_mod, "train", interrupted_train)
    with pytest.raises(Interrupt):
        run_stage(part, "pretrain")
    # pretrain/ or, where stages write into a staging folder until they finish, pretrain.staging/
    ckpts = sorted(p.name for p in part.run_path.glob("pretrain*/checkpoints/step-*"))
    assert ckpts == ["step-6"]  # keep_last=1: the step-3 checkpoint was pruned, step 9 never came

    # The resumed run: record the steps it trains and the optimizer updates it actually makes.
    trained_steps, optimizer_updates = [], []

    def recording_train(*args, **kwargs):
        kwargs["hooks"] = [*kwargs.get("hooks", []), lambda model, state: trained_steps.append(state.step)]
        return real_train(*args, **kwargs)

    def counting_adamw(*args, **kwargs):
        opt = real_adamw(*args, **kwargs)
        opt.register_step_post_hook(lambda *_: optimizer_updates.append(1))
        return opt

    monkeypatch.setattr(stage_mod, "train", recording_train)
    monkeypatch.setattr(stage_mod, "build_adamw", counting_adamw)
    result = run_stage(part, "pretrain")  # pretrain.resume=auto (the default)
    # It starts after the checkpoint's step and runs only the remaining ones: a restart from step 0
    # would log the same losses (training is deterministic) but would recompute steps 1-6.
    assert trained_steps == [7, 8, 9, 10]
    assert len(optimizer_updates) == 10 - 6
    assert result.metrics["steps"] == 10
    # metrics.jsonl holds every step exactly once: kept rows 1-6 of the first run, rows 7-10 of the second
    rows = [
        json.loads(x) for x in (part.run_path / "pretrain" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [r["step"] for r in rows] == list(range(1, 11))

    a, b = _losses(full.run_path), _losses(part.run_path)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    for step in range(1, 11):
        assert a[step] == b[step], f"step {step}: {a[step]} != {b[step]}"
