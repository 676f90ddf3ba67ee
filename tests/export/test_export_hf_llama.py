"""`export --format hf-llama`: a plain Llama dir that loads without kolm and reproduces our logits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from kolm.export import export_model

CHECK = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
assert not any(m == "kolm" or m.startswith("kolm.") for m in sys.modules), "kolm was imported"
x = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    logits = model(x).logits
torch.save(logits, sys.argv[3])
print(type(model).__name__, tok("안녕")["input_ids"])
"""


def test_hf_llama_export_loads_without_kolm_and_matches(model_dir, tmp_path):
    from kolm.models.loading import load_model

    out = export_model(model_dir, "hf-llama", tmp_path / "hf-llama")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    ours, _ = load_model(model_dir)
    x = torch.randint(0, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    # A fresh interpreter without kolm on the import path's registry: only vanilla transformers.
    res = subprocess.run(
        [sys.executable, "-c", CHECK, str(out), json.dumps(x.tolist()), str(tmp_path / "l.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("LlamaForCausalLM")
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "l.pt"), ours(x).logits, atol=1e-5, rtol=0)


def test_export_rejects_unknown_format_and_missing_model(model_dir, tmp_path):
    from kolm.errors import CheckpointError, KolmError

    with pytest.raises(KolmError, match="hf-llama"):
        export_model(model_dir, "onnx-ish", tmp_path / "x")
    with pytest.raises(CheckpointError, match="config.json"):
        export_model(tmp_path / "nothing", "hf-llama", tmp_path / "y")


def test_export_cli_defaults_to_the_run_dir(model_dir, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from kolm.cli.main import app, build_app

    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "pretrain" / "final")
    (run / "config.yaml").write_text("name: run\n")
    res = CliRunner().invoke(build_app(), ["export", "--model", str(run / "pretrain" / "final")])
    assert res.exit_code == 0, res.output
    assert (run / "export" / "hf-llama" / "config.json").exists()
    del app


def test_export_names_the_formats_of_the_models_arch(model_dir, tmp_path, monkeypatch):
    import kolm.export
    from kolm.errors import KolmError
    from kolm.models.registry import get_arch

    monkeypatch.setitem(kolm.export.FORMATS, "gguf-test", "a format no kolm arch exports yet")
    with pytest.raises(KolmError, match="gguf-test export does not apply to gpt models; formats for gpt: hf-llama"):
        export_model(model_dir, "gguf-test", tmp_path / "x")
    assert "hf-llama" in get_arch("gpt").exporters


def test_export_rejects_a_model_kolm_did_not_train(model_dir, tmp_path):
    from kolm_testkit import llama_twin, make_model

    from kolm.errors import KolmError

    llama_twin(make_model()).save_pretrained(tmp_path / "llama")
    with pytest.raises(KolmError, match="'llama' is not a kolm model type"):
        export_model(tmp_path / "llama", "hf-llama", tmp_path / "x")
