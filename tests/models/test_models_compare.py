"""`kolm arch compare` on tiny shapes: sizing to matched parameter counts, training, latency, the written files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import make_data, make_tokenizer  # noqa: E402


def _tiny_model_cfg():
    from kolm.model_config import GPTConfig, ModelConfig

    return ModelConfig(
        arch="gpt", d_model=64, n_layers=2, max_seq_len=64, gpt=GPTConfig(n_heads=2, n_kv_heads=1, ffn_dim=192)
    )


def test_every_arch_is_sized_within_ten_percent():
    from kolm.train.compare import param_counts, sized_configs

    configs = sized_configs(_tiny_model_cfg(), ["gpt", "mamba2", "rwkv7", "deepseek"], vocab_size=300)
    target, _ = param_counts(configs["gpt"], 300)
    for arch, cfg in configs.items():
        total, active = param_counts(cfg, 300)
        assert cfg.arch == arch and abs(total - target) <= 0.1 * target, arch
        assert (active < total) == (arch == "deepseek")


def test_compare_trains_measures_and_writes(tmp_path):
    from kolm.train.compare import compare_archs
    from kolm.train.config import PretrainConfig

    make_data(tmp_path / "data", n_train=80, n_val=16)
    make_tokenizer(tmp_path / "tokenizer")
    p = PretrainConfig(
        max_steps=3,
        seq_len=32,
        batch_size=2,
        warmup_steps=1,
        eval_every=2,
        eval_batches=1,
        log_every=1,
        save_every=0,
        sample_max_new_tokens=2,
        sample_prompts=["오늘"],
        precision="fp32",
    )
    results = compare_archs(
        _tiny_model_cfg(),
        p,
        ["gpt", "mamba2", "rwkv7", "deepseek"],
        data_dir=tmp_path / "data",
        tokenizer_dir=tmp_path / "tokenizer",
        out=tmp_path / "arch",
        lengths=(16, 48),
        decode_tokens=2,
        isolate=False,
        log=lambda _msg: None,
    )
    saved = json.loads((tmp_path / "arch" / "compare.json").read_text(encoding="utf-8"))
    assert set(saved["archs"]) == {"gpt", "mamba2", "rwkv7", "deepseek"}
    for arch, r in results["archs"].items():
        assert r["val_bpc"] > 0 and r["train_tok_per_s"] > 0
        assert [c["step"] for c in r["curve"]] == [2, 3] and all(c["tokens"] > 0 for c in r["curve"])
        grow = r["latency"][1]["state_bytes"] - r["latency"][0]["state_bytes"]
        assert (grow == 0) == (arch in ("mamba2", "rwkv7")), arch  # recurrent state: flat; caches: growing
    gpt, mla = (results["archs"][a]["latency"][1]["state_bytes"] for a in ("gpt", "deepseek"))
    assert mla < gpt  # the latent cache is smaller than GPT's keys and values
    md = (tmp_path / "arch" / "compare.md").read_text(encoding="utf-8")
    assert "| mamba2 |" in md and "active (M)" in md
    assert (tmp_path / "arch" / "compare.png").stat().st_size > 10_000

    # The run report shows the comparison: its table and its chart (linked from report/).
    from kolm.report import build_markdown

    report = build_markdown(tmp_path)
    assert "Architectures side by side" in report and "| deepseek |" in report
    assert "](../arch/compare.png)" in report


def test_cli_arch_errors_are_one_line(capsys):
    from kolm.cli.main import main
    from kolm.errors import ConfigError
    from kolm.train.compare import sized_configs

    for args, message in (
        (["arch", "contrast"], "the only action is `compare`"),
        (["arch", "compare", "--lengths", "12x"], "--lengths '12x'"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(ConfigError, match="'lstm': not a kolm architecture"):
        sized_configs(_tiny_model_cfg(), ["lstm"], 300)


@pytest.mark.slow
def test_arch_compare_command_on_the_arch_preset(tmp_path, capsys):
    """`kolm arch compare --config arch` end to end (the embedded corpus; a few minutes on 2 cores)."""
    from kolm.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["arch", "compare", "--config", "arch", "--run-dir", str(tmp_path), "--lengths", "128,512"])
    assert exc.value.code == 0
    results = json.loads((tmp_path / "arch" / "compare.json").read_text(encoding="utf-8"))
    assert set(results["archs"]) == {"gpt", "mamba2", "rwkv7", "deepseek"}
    assert "| deepseek |" in capsys.readouterr().out
