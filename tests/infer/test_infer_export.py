"""`export --format hf-llama`: a plain Llama dir that loads without kolm and reproduces our logits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from kolm.infer.export import export_model

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
    from kolm.models.registry import load_causal_lm

    out = export_model(model_dir, "hf-llama", tmp_path / "hf-llama")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    ours = load_causal_lm(model_dir)
    x = torch.randint(0, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    # A fresh interpreter without kolm on the import path's registry: only vanilla transformers.
    res = subprocess.run([sys.executable, "-c", CHECK, str(out), json.dumps(x.tolist()), str(tmp_path / "l.pt")],
                         capture_output=True, text=True, timeout=120)
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
