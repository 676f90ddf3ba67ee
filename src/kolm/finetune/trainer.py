"""One fine-tuning run: a task (classify or sft) with a method, on a base model, within a budget.

Builds the model (plus a PEFT wrapper), batches the encoded examples, trains
with the pretraining loop's optimizer, schedule and step logic, evaluates on
the validation split every `eval_every` steps (early stopping on the
validation metric), keeps the best weights, scores the test split, and writes
the adapter (PEFT format) or the full model with the tokenizer.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from kolm.errors import KolmError
from kolm.finetune.data import encode_classification, encode_sft, load_classification, load_sft
from kolm.finetune.methods import DEFAULT_LR, check_method_available, peft_config

__all__ = ["FinetuneResult", "finetune", "count_parameters"]


@dataclass
class FinetuneResult:
    """What one run measured."""

    task: str
    method: str
    trainable_params: int
    total_params: int
    steps: int
    wall_time_s: float
    tokens_per_s: float
    peak_memory_mb: float
    validation: dict[str, float]
    test: dict[str, Any] = field(default_factory=dict)
    output_dir: str = ""

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable_params / max(1, self.total_params)


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


class _PeakRSS:
    """Peak resident memory growth during a block (sampled), for CPU runs; CUDA uses its own counter."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                import os

                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return 0

    def __enter__(self) -> "_PeakRSS":
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self._rss()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss() - self.start)

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss() - self.start)

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


def _collate(rows: list[dict[str, Any]], pad_id: int, left: bool) -> dict[str, Any]:
    """Pad a batch. Classification pads on the left so the last position is the pooled token."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids, mask, labels = [], [], []
    for r in rows:
        n = len(r["input_ids"])
        pad = [pad_id] * (width - n)
        ids.append(pad + r["input_ids"] if left else r["input_ids"] + pad)
        m = [0] * (width - n)
        mask.append(m + [1] * n if left else [1] * n + m)
        if "labels" in r:
            lp = [-100] * (width - n)
            labels.append(lp + r["labels"] if left else r["labels"] + lp)
        else:
            labels.append(r["label"])
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def _batches(rows: list[dict[str, Any]], batch_size: int, pad_id: int, left: bool, seed: int) -> Iterator[dict[str, Any]]:
    """Endless shuffled batches, reshuffled each epoch with a fixed seed."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            yield _collate([rows[j] for j in order[i : i + batch_size]], pad_id, left)


def _to(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device) for k, v in batch.items()}


def _evaluate(model: Any, rows: list[dict[str, Any]], task: str, pad_id: int, device: str, labels: list[str], batch_size: int = 32) -> dict[str, Any]:
    """Validation/test metrics: accuracy, macro-F1 and confusion for classify; loss and perplexity for sft."""
    import torch

    model.eval()
    preds, gold, losses, tokens = [], [], 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = _to(_collate(rows[i : i + batch_size], pad_id, left=task == "classify"), device)
            out = model(**batch)
            if task == "classify":
                preds += out.logits.argmax(-1).tolist()
                gold += batch["labels"].tolist()
            else:
                n = int((batch["labels"][:, 1:] != -100).sum())
                losses += float(out.loss) * n
                tokens += n
    model.train()
    if task == "classify":
        from kolm.evaluate.classification import classification_report

        return classification_report(gold, preds, labels)
    loss = losses / max(1, tokens)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50))}


def _load_model(task: str, base: Path, labels: list[str], pad_id: int) -> Any:
    import kolm.models.registry  # noqa: F401  (registers kolm architectures with transformers)
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if task == "classify":
        return AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={v: i for i, v in enumerate(labels)},
            pad_token_id=pad_id,
        )
    return AutoModelForCausalLM.from_pretrained(base)


def finetune(
    task: str,
    method: str,
    run_cfg: Any,
    base_model: str | Path,
    out_dir: str | Path,
    progress: Any | None = None,
) -> FinetuneResult:
    """Fine-tune `base_model` on `task` with `method` per `run_cfg.finetune`; write the result to `out_dir`."""
    import torch
    from transformers import AutoTokenizer

    from kolm.progress import Progress
    from kolm.run import resolve_device, seed_everything, write_json

    cfg = run_cfg.finetune
    progress = progress or Progress(enabled=False)
    device = resolve_device(cfg.device or run_cfg.device)
    check_method_available(method, device)
    base = Path(base_model)
    if not (base / "config.json").exists():
        raise KolmError(f"base model not found: {base} (run `kolm pretrain` first, or set finetune.base_model)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(run_cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    labels: list[str] = []
    if task == "classify":
        data = load_classification(cfg.classify, seed=run_cfg.seed)
        labels = data.labels
        train_rows = encode_classification(tokenizer, data.train, cfg.seq_len)
        val_rows = encode_classification(tokenizer, data.validation, cfg.seq_len)
        test_rows = encode_classification(tokenizer, data.test, cfg.seq_len)
    else:
        train_chats, val_chats = load_sft(cfg.sft, seed=run_cfg.seed)
        train_rows = encode_sft(tokenizer, train_chats, cfg.seq_len)
        val_rows = encode_sft(tokenizer, val_chats, cfg.seq_len)
        test_rows = []

    model = _load_model(task, base, labels, pad_id)
    pc = peft_config(method, task, cfg, model.config)
    if pc is not None:
        import peft

        model = peft.get_peft_model(model, pc)
    model.to(device).train()
    trainable, total = count_parameters(model)

    steps = cfg.max_steps
    if cfg.epochs > 0:
        steps = max(1, math.ceil(cfg.epochs * len(train_rows) / cfg.batch_size))
    lr = cfg.lr or DEFAULT_LR[method]
    higher_is_better = task == "classify"
    key = "macro_f1" if task == "classify" else "loss"
    metrics_path = out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)

    def evaluate() -> dict[str, Any]:
        return _evaluate(model, val_rows, task, pad_id, device, labels)

    best: dict[str, Any] = {"score": None, "state": None, "step": 0, "metrics": {}}

    def on_eval(step: int, val: dict[str, Any]) -> bool:
        """Keep the best weights; return True to stop early."""
        score = val[key]
        improved = best["score"] is None or (score > best["score"] if higher_is_better else score < best["score"])
        if improved:
            best.update(score=score, step=step, metrics=val, bad=0,
                        state={n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
            return False
        best["bad"] = best.get("bad", 0) + 1
        return bool(cfg.patience) and best["bad"] >= cfg.patience

    batches = _batches(train_rows, cfg.batch_size, pad_id, task == "classify", run_cfg.seed)
    t0 = time.perf_counter()
    with _PeakRSS(device) as mem:
        done, tokens = _optimize(model, batches, steps, lr, cfg, progress, f"{task}/{method}", metrics_path, evaluate, on_eval, device)
    wall = time.perf_counter() - t0
    if best["state"] is not None:  # restore the best validation checkpoint
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, v in best["state"].items():
                params[n].copy_(v)
    validation = best["metrics"] or evaluate()
    test = _evaluate(model, test_rows, task, pad_id, device, labels) if test_rows else {}

    target = out / ("model" if method == "full" else "adapter")
    saved = model.save_pretrained(target, safe_serialization=True)
    del saved
    tokenizer.save_pretrained(target)
    write_json(target / "kolm_task.json", {"task": task, "method": method, "labels": labels, "base_model": str(base)})
    result = FinetuneResult(
        task=task, method=method, trainable_params=trainable, total_params=total, steps=done,
        wall_time_s=round(wall, 2), tokens_per_s=round(tokens / max(wall, 1e-9), 1), peak_memory_mb=mem.mb,
        validation={k: v for k, v in validation.items() if isinstance(v, (int, float))},
        test=test, output_dir=str(target),
    )
    write_json(out / "eval.json", {**result.__dict__, "trainable_pct": result.trainable_pct, "best_step": best["step"]})
    return result



class _EarlyStop(Exception):
    """Raised by the step hook when the validation metric stopped improving."""


def _optimize(model, batches, steps, lr, cfg, progress, label, metrics_path, evaluate, on_eval, device) -> tuple[int, int]:
    """Train with the pretraining loop (optimizer, schedule, clipping, NaN guard, logging); return (steps, tokens).

    Early stopping: `on_eval` returns True when patience ran out; a step hook
    then ends the loop after that evaluation.
    """
    from kolm.train.loop import LoopSettings, resolve_precision, train
    from kolm.train.optim import build_adamw
    from kolm.train.schedule import build_scheduler

    optimizer = build_adamw(model, lr=lr, weight_decay=cfg.weight_decay)
    warm = min(cfg.warmup_steps, max(1, steps // 10))
    scheduler = build_scheduler(optimizer, "cosine", warm, steps)
    settings = LoopSettings(
        max_steps=steps, grad_clip=1.0, precision=resolve_precision("auto", device), log_every=10,
        eval_every=cfg.eval_every, save_every=0, resume=None, best_metric="score", lower_is_better=False,
    )
    stop = {"now": False}

    def run_eval(m, step: int) -> dict[str, float]:
        val = evaluate()
        stop["now"] = on_eval(step, val)
        return {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}

    done = {"steps": 0, "tokens": 0}

    def early_stop(m, state) -> None:
        done.update(steps=state.step, tokens=state.tokens)
        if stop["now"]:
            raise _EarlyStop()

    with progress.task(f"finetune {label}", total=steps) as bar:
        try:
            train(model, batches, optimizer, scheduler, settings=settings, device=device, evaluate=run_eval,
                  metrics_path=metrics_path, progress=bar, hooks=[early_stop])
        except _EarlyStop:
            pass
    return done["steps"], done["tokens"]
