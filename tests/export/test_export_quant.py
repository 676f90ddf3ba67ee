"""Quantized inference on the CPU through the one loader (int8, bf16), and the measured table."""

from __future__ import annotations

import pytest
import torch

from kolm.models.quant import cpu_native_bf16, int8_available


@pytest.mark.skipif(not int8_available(), reason="this torch has no dynamic int8 quantization")
def test_int8_load_quantizes_the_blocks_keeps_the_head_and_generates(model_dir):
    from kolm.infer.generate import SamplingParams, generate
    from kolm.models.loading import load_model

    full, tokenizer = load_model(model_dir)
    q, _ = load_model(model_dir, quant="int8")
    kinds = {type(m).__name__ for n, m in q.named_modules() if n.endswith(("q_proj", "down_proj"))}
    assert kinds == {"Linear"} and all(
        type(m) is not torch.nn.Linear for n, m in q.named_modules() if n.endswith("q_proj")
    )
    assert type(q.lm_head) is torch.nn.Linear  # the head stays fp32
    x = torch.randint(3, full.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, got = full(x).logits, q(x).logits
    assert float((got - ref).abs().max() / ref.abs().max()) < 0.05
    params = SamplingParams(max_new_tokens=8, temperature=0, eos_token_ids=[])
    a = generate(full, tokenizer, ["오늘은 날씨가"], params)[0].token_ids
    b = generate(q, tokenizer, ["오늘은 날씨가"], params)[0].token_ids
    assert len(b) == 8 and sum(i == j for i, j in zip(a, b)) >= 6


def test_bf16_load_follows_the_cpu(model_dir):
    from kolm.errors import KolmError
    from kolm.models.loading import load_model

    if cpu_native_bf16():
        model, _ = load_model(model_dir, quant="bf16")
        assert model.lm_head.weight.dtype == torch.bfloat16
    else:
        with pytest.raises(KolmError, match="no native bf16"):
            load_model(model_dir, quant="bf16")


def test_quantize_command_writes_the_table(model_dir, tmp_path):
    from typer.testing import CliRunner

    from kolm.cli.main import build_app

    out = tmp_path / "quant"
    res = CliRunner().invoke(
        build_app(),
        [
            "quantize",
            "--model",
            str(model_dir),
            "-v",
            "fp32",
            "-v",
            "int8",
            "-v",
            "gguf-q4_0",
            "--out",
            str(out),
            "--new-tokens",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    table = (out / "quant.md").read_text(encoding="utf-8")
    assert "| fp32 | PyTorch" in table and "| gguf-q4_0 |" in table and "GB/s measured here" in table
    import json

    rows = {r["variant"]: r for r in json.loads((out / "quant.json").read_text())["rows"]}
    assert rows["gguf-q4_0"]["size_mb"] < rows["fp32"]["size_mb"]
    assert abs(rows["int8"]["bpc"] - rows["fp32"]["bpc"]) < 0.05 * rows["fp32"]["bpc"]
