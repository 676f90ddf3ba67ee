"""DDP and FSDP2 with 2 processes on CPU (gloo) log the same losses as one process with the same global batch,
for the Llama-style GPT and for Mamba-2, RWKV-7 and DeepSeek (MoE + MLA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kolm.run import run_stage

COMMON = {"pretrain.max_steps": 4, "pretrain.eval_every": 2, "pretrain.save_every": 2}


def _records(run_dir):
    rows = [json.loads(x) for x in (run_dir / "pretrain" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["step"]: r for r in rows}


@pytest.fixture(scope="module")
def single_process(tiny_artifacts, tmp_path_factory):
    import shutil

    from train_helpers import tiny_overrides

    from kolm.config import load_config

    run_dir = tmp_path_factory.mktemp("single")
    shutil.copytree(tiny_artifacts, run_dir, dirs_exist_ok=True)
    cfg = load_config("tiny", tiny_overrides(**COMMON, **{"pretrain.batch_size": 4}), run_dir=run_dir)
    run_stage(cfg, "pretrain")
    return _records(run_dir)


def _torchrun(run_dir, overrides: list[str]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "kolm.cli.launch",
        "--config",
        "tiny",
        "--run-dir",
        str(run_dir),
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(strategy, single_process, tiny_artifacts, tmp_path):
    import shutil

    from train_helpers import tiny_overrides

    shutil.copytree(tiny_artifacts, tmp_path, dirs_exist_ok=True)
    _torchrun(tmp_path, tiny_overrides(**COMMON, **{"pretrain.batch_size": 2, "pretrain.distributed": strategy}))
    ours = _records(tmp_path)
    assert sorted(ours) == sorted(single_process) == [1, 2, 3, 4]
    for step, ref in single_process.items():
        assert ours[step]["loss"] == pytest.approx(ref["loss"], abs=1e-4), step
        if "val_loss" in ref:
            assert ours[step]["val_loss"] == pytest.approx(ref["val_loss"], abs=1e-4), step
    assert (tmp_path / "pretrain" / "final" / "config.json").is_file()
    assert (tmp_path / "pretrain" / "checkpoints" / "step-4" / "trainer.json").is_file()


@pytest.mark.parametrize(
    ("arch", "strategy"), [("mamba2", "fsdp"), ("rwkv7", "fsdp"), ("deepseek", "fsdp"), ("deepseek", "ddp")]
)
def test_other_architectures_train_the_same_in_two_processes(arch, strategy, tiny_artifacts, tmp_path):
    """Sharded blocks (FSDP2), replicated models (DDP, with routed experts that some micro-batches leave unused),
    and the MoE bias update from the load summed over ranks: the losses equal one process's."""
    import shutil

    from train_helpers import arch_overrides

    from kolm.config import load_config

    single, double = tmp_path / "single", tmp_path / "double"
    for run_dir in (single, double):
        shutil.copytree(tiny_artifacts, run_dir)
    run_stage(
        load_config("tiny", arch_overrides(arch, **COMMON, **{"pretrain.batch_size": 4}), run_dir=single), "pretrain"
    )
    _torchrun(double, arch_overrides(arch, **COMMON, **{"pretrain.batch_size": 2, "pretrain.distributed": strategy}))
    ref, ours = _records(single), _records(double)
    assert sorted(ours) == sorted(ref) == [1, 2, 3, 4]
    for step in ref:
        assert ours[step]["loss"] == pytest.approx(ref[step]["loss"], abs=1e-4), step
        if "val_loss" in ref[step]:
            assert ours[step]["val_loss"] == pytest.approx(ref[step]["val_loss"], abs=1e-4), step
