"""The package stage's core: every configured export written, every form measured, bad settings named."""

from __future__ import annotations

import json

import pytest

from kolm.errors import ConfigError
from kolm.export.config import ExportConfig
from kolm.export.stage import package


def test_package_writes_exports_and_the_quant_table(model_dir, tmp_path):
    cfg = ExportConfig(formats=["hf-llama", "gguf"], measure=["fp32", "gguf-q8_0"], new_tokens=4)
    out = tmp_path / "export"
    result = package(cfg, model_dir=model_dir, out=out, texts=["오늘은 날씨가 맑다.", "이 영화는 재미있었다."])
    assert set(result["exports"]) == {"hf-llama", "gguf"}
    assert (out / "hf-llama" / "config.json").is_file() and (out / "hf-llama" / "README.md").is_file()
    assert (out / "gguf" / "model-Q8_0.gguf").is_file()
    rows = json.loads((out / "quant" / "quant.json").read_text(encoding="utf-8"))["rows"]
    assert [r["variant"] for r in rows] == ["fp32", "gguf-q8_0"]
    fp32, q8 = rows
    assert q8["size_mb"] < fp32["size_mb"] and fp32["decode_tok_s"] > 0
    assert abs(q8["bpc"] - fp32["bpc"]) < 0.05 * fp32["bpc"]  # Q8_0 keeps the quality on the same texts
    assert not (out / "quant" / "work").exists()  # measured copies are not kept beside the exports


def test_unknown_format_or_form_is_named():
    with pytest.raises(ConfigError, match="export.formats: unknown format 'tflite'"):
        ExportConfig(formats=["tflite"])
    with pytest.raises(ConfigError, match="export.measure: unknown form 'int4'"):
        ExportConfig(measure=["int4"])
