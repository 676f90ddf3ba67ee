"""Early stopping and best-weight keeping are settings of the training loop; fine-tuning uses them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from kolm.config import load_config
from kolm.finetune.trainer import finetune
from kolm.train.loop import LoopSettings, train


class _Regressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))

    def forward(self, x, y):
        return SimpleNamespace(loss=((x @ self.w - y) ** 2).mean())


def _batches():
    g = torch.Generator().manual_seed(0)
    while True:
        x = torch.randn(8, 3, generator=g)
        yield {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5])}


def _run(scores, **settings):
    """Train with an evaluate() that reports `scores` in turn; return the state, the weights seen at each eval, the model."""
    model = _Regressor()
    seen: dict[int, torch.Tensor] = {}
    queue = list(scores)

    def evaluate(m, step):
        seen[step] = m.w.detach().clone()
        return {"val_score": queue.pop(0)}

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    state = train(
        model,
        _batches(),
        opt,
        settings=LoopSettings(
            max_steps=10, eval_every=2, resume=None, best_metric="val_score", lower_is_better=False, **settings
        ),
        evaluate=evaluate,
    )
    return state, seen, model


def test_patience_stops_after_evaluations_without_improvement():
    state, seen, model = _run([0.5, 0.7, 0.6, 0.7, 0.9], patience=2)
    # evals at steps 2 (best), 4 (better), 6 (worse), 8 (equal is not better): the second miss stops at step 8
    assert state.step == 8 and sorted(seen) == [2, 4, 6, 8]
    assert state.best_step == 4 and state.best_metric == 0.7 and state.best_eval == {"val_score": 0.7}
    assert state.evals_since_best == 2
    assert torch.equal(model.w.detach(), seen[8])  # keep_best off: the last weights stay


def test_keep_best_restores_the_best_weights():
    state, seen, model = _run([0.5, 0.7, 0.6, 0.7, 0.9], patience=2, keep_best=True)
    assert state.step == 8 and torch.equal(model.w.detach(), seen[4])
    assert not torch.equal(seen[4], seen[8])


def test_no_patience_runs_every_step_and_nan_is_no_improvement():
    state, seen, model = _run([0.5, float("nan"), 0.4, 0.8, 0.1], keep_best=True)
    assert state.step == 10 and sorted(seen) == [2, 4, 6, 8, 10]
    assert state.best_step == 8 and state.evals_since_best == 1
    assert torch.equal(model.w.detach(), seen[8])


def test_finetune_stops_early_and_records_the_best_step(tmp_path, tiny_base):
    # a learning rate too small to change any prediction: the first validation score is never beaten
    cfg = load_config(
        "tiny",
        [
            "finetune.max_steps=12",
            "finetune.eval_every=2",
            "finetune.patience=2",
            "finetune.lr=1e-12",
            "finetune.batch_size=8",
            "finetune.seq_len=48",
            "finetune.classify.max_eval=16",
            "device=cpu",
        ],
        run_dir=tmp_path / "run",
    )
    res = finetune(cfg.finetune, "classify", "lora", base_model=tiny_base, out=tmp_path / "classify", seed=cfg.seed)
    ev = json.loads((tmp_path / "classify" / "eval.json").read_text(encoding="utf-8"))
    assert res.steps == 6 and ev["steps"] == 6 and ev["best_step"] == 2
    rows = [json.loads(x) for x in (tmp_path / "classify" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [r for r in rows if "val_macro_f1" in r]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert res.validation["macro_f1"] == evals[0]["val_macro_f1"] == ev["validation"]["macro_f1"]
    assert ev["output_dir"] == "adapter" and res.output_dir == str(tmp_path / "classify" / "adapter")
    task = json.loads((tmp_path / "classify" / "adapter" / "kolm_task.json").read_text(encoding="utf-8"))
    assert (
        task["task"] == "classify"
        and task["labels"] == ["부정", "긍정"]
        and task["base_model"] == str(tiny_base.resolve())
    )
    adapter_cfg = json.loads((tmp_path / "classify" / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_base.resolve())
