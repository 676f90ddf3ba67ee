"""The multi-node path rehearsed on one machine: two `torchrun` node processes (--nnodes 2, one rank each, gloo,
rendezvous on 127.0.0.1) log the losses of one process, and an interrupted two-node job resumes from its checkpoint.

Slow (about a minute on 2 cores): `pytest -m slow tests/train/test_train_multinode.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kolm.run import run_stage

pytestmark = pytest.mark.slow

STEPS = {"pretrain.max_steps": 40, "pretrain.eval_every": 20, "pretrain.save_every": 5, "pretrain.keep_last": 2}


def _records(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(x) for x in (run_dir / "pretrain" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    steps = [r["step"] for r in rows]
    assert len(steps) == len(set(steps)), "every step is logged once"
    return {r["step"]: r for r in rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_nodes(run_dir: Path, overrides: list[str]) -> list[subprocess.Popen]:
    """Two node processes, as two machines would run them, rendezvousing on 127.0.0.1."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}  # log lines unwrapped
    procs = []
    for node_rank in (0, 1):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--node-rank",
            str(node_rank),
            "--nproc-per-node",
            "1",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(port),
            "-m",
            "kolm.cli.launch",
            "--config",
            "tiny",
            "--run-dir",
            str(run_dir),
            *overrides,
        ]
        log = open(run_dir / f"node{node_rank}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
    return procs


def _descendants(pids: list[int]) -> list[int]:
    """The processes started by `pids` (torchrun starts its workers in their own sessions), deepest first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(pids)
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found[::-1]


def _wait(procs: list[subprocess.Popen], run_dir: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    for p in procs:
        p.wait(timeout=max(1, deadline - time.time()))
    logs = "\n".join((run_dir / f"node{r}.log").read_text()[-2000:] for r in (0, 1))
    assert all(p.returncode == 0 for p in procs), logs


@pytest.fixture(scope="module")
def single_process(tiny_artifacts, tmp_path_factory):
    from train_helpers import tiny_overrides

    from kolm.config import load_config

    run_dir = tmp_path_factory.mktemp("single")
    shutil.copytree(tiny_artifacts, run_dir, dirs_exist_ok=True)
    run_stage(load_config("tiny", tiny_overrides(**STEPS, **{"pretrain.batch_size": 4}), run_dir=run_dir), "pretrain")
    return _records(run_dir)


def _overrides() -> list[str]:
    from train_helpers import tiny_overrides

    return tiny_overrides(**STEPS, **{"pretrain.batch_size": 2, "pretrain.distributed": "ddp"})


def _assert_same_losses(ours: dict[int, dict], ref: dict[int, dict]) -> None:
    assert sorted(ours) == sorted(ref) == list(range(1, STEPS["pretrain.max_steps"] + 1))
    for step, r in ref.items():
        assert ours[step]["loss"] == pytest.approx(r["loss"], abs=1e-4), step
        if "val_loss" in r:
            assert ours[step]["val_loss"] == pytest.approx(r["val_loss"], abs=1e-4), step


def test_two_nodes_match_one_process(single_process, tiny_artifacts, tmp_path):
    shutil.copytree(tiny_artifacts, tmp_path, dirs_exist_ok=True)
    _wait(_start_nodes(tmp_path, _overrides()), tmp_path)
    _assert_same_losses(_records(tmp_path), single_process)
    assert (tmp_path / "pretrain" / "final" / "config.json").is_file()


def test_interrupted_two_node_job_resumes(single_process, tiny_artifacts, tmp_path):
    shutil.copytree(tiny_artifacts, tmp_path, dirs_exist_ok=True)
    procs = _start_nodes(tmp_path, _overrides())
    deadline = time.time() + 240
    while not list(tmp_path.glob("pretrain*/checkpoints/step-*/trainer.json")):  # the first checkpoint
        assert time.time() < deadline and all(p.poll() is None for p in procs), "no checkpoint before the job ended"
        time.sleep(0.02)
    for pid in _descendants([p.pid for p in procs]):  # a node failure: the workers die with their node
        os.kill(pid, signal.SIGKILL)
    for p in procs:
        p.kill()
        p.wait()
    saved = sorted(int(c.name.split("-")[1]) for c in tmp_path.glob("pretrain*/checkpoints/step-*"))
    assert saved and max(saved) < STEPS["pretrain.max_steps"]
    assert not (tmp_path / "pretrain" / "final").exists()

    _wait(_start_nodes(tmp_path, _overrides()), tmp_path)  # the same command again: resume=auto
    _assert_same_losses(_records(tmp_path), single_process)
    log = (tmp_path / "node0.log").read_text(encoding="utf-8")  # the second launch's rank 0
    assert re.search(r"resumed from \S+step-(\d+) at step \1", log), log[-2000:]  # not from step 0
