"""The pretrain stage end to end on a tiny run: outputs, metrics, samples, summary, HF export."""

from __future__ import annotations

import json

import pytest

from kolm.errors import ConfigError
from kolm.run import run_stage


def test_pretrain_stage_writes_everything(tiny_run):
    cfg = tiny_run()
    result = run_stage(cfg, "pretrain")
    out = cfg.run_path / "pretrain"
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 9))
    assert {"loss", "lr", "tok_per_s"} <= set(records[0])
    assert any("val_bpc" in r and "val_loss" in r for r in records)
    assert (out / "final" / "config.json").is_file() and (out / "final" / "tokenizer.json").is_file()
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert samples and samples[-1]["prompt"] == "오늘"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "val_bpc" in summary and "| 오늘 |" in summary
    assert result.metrics["val_bpc"] > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-")) == ["step-4", "step-8"]

    from transformers import AutoModelForCausalLM

    import kolm.models.registry  # noqa: F401

    model = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    assert model.config.model_type == "kolm_gpt" and model.config.vocab_size > 0


def test_seq_len_beyond_max_positions(tiny_run):
    cfg = tiny_run(**{"pretrain.seq_len": 128})
    with pytest.raises(ConfigError, match="max_seq_len"):
        run_stage(cfg, "pretrain")


def test_repacking_is_a_noop(tiny_run):
    cfg = tiny_run(**{"pretrain.max_steps": 2, "pretrain.warmup_steps": 0, "pretrain.eval_every": 0})
    run_stage(cfg, "pretrain")
    shard = cfg.run_path / "pretrain" / "packed" / "train-00000.bin"
    mtime = shard.stat().st_mtime_ns
    run_stage(cfg, "pretrain", force=True)
    assert shard.stat().st_mtime_ns == mtime
