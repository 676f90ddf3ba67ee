"""Bad input stops with a clear KolmError and loses nothing: NaN loss, corrupt/missing checkpoints, mismatches."""

from __future__ import annotations

import shutil

import pytest
import torch

from kolm.errors import CheckpointError, ConfigError, KolmError
from kolm.run import run_stage
from kolm.train.checkpoint import Checkpointer
from kolm.train.loop import LoopSettings, TrainingDiverged, train
from kolm.train.optim import build_adamw


class _Out:
    def __init__(self, loss):
        self.loss = loss


class NanAfter(torch.nn.Module):
    """A linear regressor whose loss turns NaN from a given call on."""

    def __init__(self, bad_from: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)
        self.calls, self.bad_from = 0, bad_from

    def forward(self, x, y):
        self.calls += 1
        loss = torch.nn.functional.mse_loss(self.lin(x).squeeze(-1), y)
        return _Out(loss * float("nan") if self.calls >= self.bad_from else loss)


def _batches():
    g = torch.Generator().manual_seed(0)
    while True:
        yield {"x": torch.randn(8, 4, generator=g), "y": torch.randn(8, generator=g)}


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = NanAfter(bad_from=4)
    opt = build_adamw(model, 1e-2)
    ckpt = Checkpointer(tmp_path / "ck", keep_last=2)
    settings = LoopSettings(max_steps=10, save_every=2, resume="never")
    with pytest.raises(TrainingDiverged, match="step 4") as info:
        train(model, _batches(), opt, settings=settings, checkpointer=ckpt)
    assert "step-2" in str(info.value) and isinstance(info.value, KolmError)
    assert [s for s, _ in ckpt.steps()] == [2]
    weights = dict(model.named_parameters())
    assert all(torch.isfinite(p).all() for p in weights.values())  # no NaN update was applied
    fresh = NanAfter(bad_from=10**9)
    ckpt.load(ckpt.latest(), fresh, build_adamw(fresh, 1e-2))  # the kept checkpoint loads


def test_corrupt_and_missing_checkpoints(tiny_run, tmp_path):
    cfg = tiny_run(**{"pretrain.max_steps": 4, "pretrain.eval_every": 0})
    run_stage(cfg, "pretrain")
    latest = cfg.run_path / "pretrain" / "checkpoints" / "step-4"
    (latest / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        run_stage(cfg, "pretrain", force=True)
    assert (latest / "trainer.json").is_file()  # nothing was deleted

    missing = tiny_run(**{"pretrain.max_steps": 4, "pretrain.resume": str(tmp_path / "nowhere")})
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run_stage(missing, "pretrain", force=True)


def test_checkpoint_from_another_tokenizer_is_rejected(tiny_run, tmp_path):
    from train_helpers import make_tokenizer

    cfg = tiny_run(**{"pretrain.max_steps": 2, "pretrain.warmup_steps": 0, "pretrain.eval_every": 0})
    run_stage(cfg, "pretrain")
    shutil.rmtree(cfg.run_path / "tokenizer")
    make_tokenizer(cfg.run_path / "tokenizer", vocab_size=280)
    with pytest.raises(CheckpointError, match="does not match"):
        run_stage(cfg, "pretrain", force=True)


def test_vocab_size_is_not_a_setting(tiny_run):
    """The vocabulary always comes from the trained tokenizer; setting it is an unknown-key error."""
    with pytest.raises(ConfigError, match="model.vocab_size: unknown key"):
        tiny_run(**{"model.vocab_size": 12345})
