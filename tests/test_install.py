"""A non-editable install works: the wheel carries the presets, the embedded corpus and the eval templates,
and `kolm pipeline --config tiny` runs from another folder with nothing of the checkout on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_wheel_install_runs_the_tiny_pipeline_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wheel = next(wheels.glob("kolm-*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The wheel's kolm comes first on the path; the editable checkout must not be what runs.
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import kolm; print(kolm.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(site))
    overrides = [
        "device=cpu",
        "tokenizer.vocab_size=600",
        "tokenizer.compare=[]",
        "model.d_model=32",
        "model.n_layers=1",
        "pretrain.max_steps=2",
        "pretrain.compile=false",
        "pretrain.warmup_steps=1",
        "pretrain.batch_size=4",
        "pretrain.seq_len=32",
        "pretrain.eval_every=2",
        "pretrain.eval_batches=1",
        "pretrain.save_every=2",
        "pretrain.sample_max_new_tokens=4",
        "finetune.tasks=[classify]",
        "finetune.max_steps=2",
        "finetune.eval_every=2",
        "finetune.batch_size=4",
        "finetune.classify.max_train=16",
        "finetune.classify.max_eval=8",
        "eval.fewshot_k=[0]",
        "eval.fewshot_max_examples=4",
        "eval.max_prompts=1",
        "eval.variation_prompts=0",
        "eval.max_new_tokens=4",
        "eval.lm_max_docs=2",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "kolm.cli.main", "pipeline", "--config", "tiny", "--run-dir", "run", *overrides],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (elsewhere / "run" / "report" / "report.html").is_file()
    assert (elsewhere / "run" / "eval" / "eval.json").is_file()
