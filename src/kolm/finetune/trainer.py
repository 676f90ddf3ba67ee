"""One fine-tuning run: a task (classify or sft; KLUE tasks in `klue.py`) with a method, on a base model, within a budget.

Loads the base model through `kolm.models.loading` (plus a PEFT wrapper),
batches the encoded examples (`kolm.data.batching`), and trains with the
pretraining loop (`kolm.train.loop`): its optimizer, schedule and step logic,
validation every `eval_every` steps, early stopping after `patience`
evaluations without a better score (macro-F1 for classify, loss for sft) and
the best weights kept. Then it scores the test split and writes the adapter
(PEFT format) or the full model with the tokenizer and `kolm_task.json`.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kolm.data.batching import batch_plan, collate, encode_classification, encode_sft, pad_token_id, padding_share
from kolm.data.tasks import load_classification, load_sft
from kolm.errors import KolmError
from kolm.files import write_json
from kolm.finetune.config import TASKS, FinetuneConfig
from kolm.finetune.methods import DEFAULT_LR, check_method_available, peft_config
from kolm.metrics.classification import classification_report
from kolm.metrics.lm import perplexity_of
from kolm.progress import Progress
from kolm.runtime import seed_everything

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

    def __enter__(self) -> _PeakRSS:
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


def _length(row: Any) -> int:
    return len(row["input_ids"]) if isinstance(row, dict) else len(row.input_ids)


def batch_stream(
    rows: Sequence[Any], batch_size: int, collate_fn: Callable[[list[Any]], dict[str, Any]], seed: int, by_length: bool
) -> Iterator[dict[str, Any]]:
    """Endless batches of `rows` (dicts or objects with `input_ids`), a new `batch_plan` each epoch from one
    seeded generator, each made into tensors by `collate_fn`."""
    rng = random.Random(seed)
    lengths = [_length(r) for r in rows]
    while True:
        for batch in batch_plan(lengths, batch_size, rng, by_length=by_length):
            yield collate_fn([rows[j] for j in batch])


def padding_report(rows: Sequence[Any], batch_size: int, seed: int, grouped: bool) -> dict[str, Any]:
    """Padding share of one epoch's batches by length and at random (what grouping saves), for eval.json."""
    lengths = [_length(r) for r in rows]
    return {
        name: round(
            padding_share(lengths, batch_plan(lengths, batch_size, random.Random(seed), by_length=by_length)), 4
        )
        for name, by_length in (("by_length", True), ("random", False))
    } | {"grouped": grouped}


def _evaluate(
    model: Any, rows: list[dict[str, Any]], task: str, pad_id: int, device: str, labels: list[str], batch_size: int = 32
) -> dict[str, Any]:
    """Validation/test metrics: accuracy, macro-F1 and confusion for classify; loss and perplexity for sft."""
    import torch

    model.eval()
    preds, gold, losses, tokens = [], [], 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = {
                k: v.to(device) for k, v in collate(rows[i : i + batch_size], pad_id, left=task == "classify").items()
            }
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
        return classification_report(gold, preds, labels)
    loss = losses / max(1, tokens)
    return {"loss": loss, "perplexity": perplexity_of(loss)}


def finetune(
    cfg: FinetuneConfig,
    task: str,
    method: str,
    *,
    base_model: str | Path,
    out: str | Path,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
) -> FinetuneResult:
    """Fine-tune `base_model` on `task` ("classify" or "sft") with `method`, per `cfg`; write the result to `out`.

    `device` is a resolved device name (cpu, cuda, cuda:N, mps). Writes
    `out/adapter/` (PEFT format; `out/model/` for full fine-tuning) with the
    tokenizer and `kolm_task.json`, `out/metrics.jsonl` and `out/eval.json`.
    The weights saved are those of the best validation score.
    """
    from kolm.models.loading import load_tokenizer

    if task not in TASKS:
        raise KolmError(f"unknown fine-tuning task {task!r}; choose one of {', '.join(TASKS)}")
    if task.startswith("klue-"):  # its own heads, encodings and metrics
        from kolm.finetune.klue import finetune_klue

        return finetune_klue(
            cfg, task, method, base_model=base_model, out=out, seed=seed, device=device, progress=progress
        )
    base, out = start_run(base_model, out, method, device, seed)
    tokenizer = load_tokenizer(base)
    pad_id = pad_token_id(tokenizer)

    labels: list[str] = []
    if task == "classify":
        data = load_classification(cfg.classify, seed=seed)
        labels = data.labels
        train_rows = encode_classification(tokenizer, data.train, cfg.seq_len)
        val_rows = encode_classification(tokenizer, data.validation, cfg.seq_len)
        test_rows = encode_classification(tokenizer, data.test, cfg.seq_len)
    else:
        train_chats, val_chats = load_sft(cfg.sft, seed=seed)
        train_rows = encode_sft(tokenizer, train_chats, cfg.seq_len)
        val_rows = encode_sft(tokenizer, val_chats, cfg.seq_len)
        test_rows = []

    model_task = "classify" if task == "classify" else "causal-lm"
    model = load_trainable(
        base, cfg, method, model_task=model_task, peft_task=task, labels=labels, pad_id=pad_id, device=device
    )

    def evaluate(m: Any, step: int) -> dict[str, float]:
        val = _evaluate(m, val_rows, task, pad_id, device, labels)
        return {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}

    left = task == "classify"  # classification pools the last token: pad on the left
    return train_and_save(
        model,
        tokenizer,
        cfg,
        task=task,
        method=method,
        base=base,
        labels=labels,
        out=out,
        rows=train_rows,
        collate_fn=lambda batch: collate(batch, pad_id, left=left),
        evaluate=evaluate,
        test=lambda m: _evaluate(m, test_rows, task, pad_id, device, labels) if test_rows else {},
        best_metric="val_macro_f1" if task == "classify" else "val_loss",
        lower_is_better=task != "classify",
        seed=seed,
        device=device,
        progress=progress,
    )


def start_run(base_model: str | Path, out: str | Path, method: str, device: str, seed: int) -> tuple[Path, Path]:
    """Checks before any work (method available here, base model present), the output folder, the seed;
    returns (absolute base dir, out dir). Absolute, so the adapter's recorded base_model_name_or_path is too."""
    check_method_available(method, device)
    base = Path(base_model).resolve()
    if not (base / "config.json").exists():
        raise KolmError(f"base model not found: {base_model} (run `kolm pretrain` first, or set finetune.base_model)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    return base, out


def load_trainable(
    base: Path,
    cfg: FinetuneConfig,
    method: str,
    *,
    model_task: str,
    peft_task: str,
    labels: list[str],
    pad_id: int,
    device: str,
    regression: bool = False,
) -> Any:
    """The base loaded for `model_task` through the one loader, wrapped for `method` (PEFT), on `device`, in
    training mode. `regression`: a one-output classifier trained with MSE (KLUE-STS)."""
    from kolm.models.loading import load_model

    # QLoRA: the frozen base is loaded in 4-bit NF4 (bitsandbytes, on the GPU), the LoRA weights train in fp32.
    quant = "nf4" if method == "qlora" else None
    model, _ = load_model(
        base,
        task=model_task,
        device=device,
        labels=labels or None,
        pad_token_id=pad_id if model_task == "classify" else None,
        quant=quant,
    )
    if regression:
        model.config.problem_type = "regression"
    if quant is not None:
        import peft

        # Norms and heads to fp32, gradients enabled at the embedding output, activation checkpointing on.
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    pc = peft_config(method, peft_task, cfg, model.config)
    if pc is not None:
        import peft

        model = peft.get_peft_model(model, pc)
    if quant is None:
        model.to(device)  # a bitsandbytes model is already on its device and refuses .to()
    model.train()
    return model


def train_and_save(
    model: Any,
    tokenizer: Any,
    cfg: FinetuneConfig,
    *,
    task: str,
    method: str,
    base: Path,
    labels: list[str],
    out: Path,
    rows: Sequence[Any],
    collate_fn: Callable[[list[Any]], dict[str, Any]],
    evaluate: Callable[[Any, int], dict[str, float]],
    test: Callable[[Any], dict[str, Any]],
    best_metric: str,
    lower_is_better: bool,
    seed: int,
    device: str,
    progress: Progress | None = None,
    task_info: dict[str, Any] | None = None,
    eval_info: dict[str, Any] | None = None,
) -> FinetuneResult:
    """The part every fine-tuning task shares: train `model` on batches of `rows` with the pretraining loop
    (validation by `evaluate`, early stopping, the best weights kept), score `test`, save the weights, the
    tokenizer and `kolm_task.json` (+ `task_info`), and write `eval.json` (+ `eval_info`)."""
    from kolm.models.loading import write_task_info
    from kolm.train.loop import LoopSettings, resolve_precision, train
    from kolm.train.optim import build_adamw
    from kolm.train.schedule import build_scheduler

    progress = progress or Progress(enabled=False)
    trainable, total = count_parameters(model)
    steps = cfg.max_steps
    if cfg.epochs > 0:
        steps = max(1, math.ceil(cfg.epochs * len(rows) / cfg.batch_size))
    metrics_path = out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    settings = LoopSettings(
        max_steps=steps,
        grad_clip=1.0,
        precision=resolve_precision("auto", device),
        log_every=10,
        eval_every=cfg.eval_every,
        save_every=0,
        resume=None,
        best_metric=best_metric,
        lower_is_better=lower_is_better,
        patience=cfg.patience,
        keep_best=True,
    )
    optimizer = build_adamw(model, lr=cfg.lr or DEFAULT_LR[method], weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, "cosine", min(cfg.warmup_steps, max(1, steps // 10)), steps)
    batches = batch_stream(rows, cfg.batch_size, collate_fn, seed, cfg.group_by_length)
    t0 = time.perf_counter()
    with _PeakRSS(device) as mem, progress.task(f"finetune {task}/{method}", total=steps) as bar:
        state = train(
            model,
            batches,
            optimizer,
            scheduler,
            settings=settings,
            device=device,
            evaluate=evaluate,
            metrics_path=metrics_path,
            progress=bar,
            log=progress.log,
        )
    wall = time.perf_counter() - t0
    best = state.best_eval or evaluate(model, state.step)  # the scores of the weights the loop kept
    validation = {k.removeprefix("val_"): v for k, v in best.items()}
    scores = test(model)

    target = out / ("model" if method == "full" else "adapter")
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    write_task_info(target, task, method, labels, base, task_info)
    result = FinetuneResult(
        task=task,
        method=method,
        trainable_params=trainable,
        total_params=total,
        steps=state.step,
        wall_time_s=round(wall, 2),
        tokens_per_s=round(state.tokens / max(wall, 1e-9), 1),
        peak_memory_mb=mem.mb,
        validation=validation,
        test=scores,
        output_dir=str(target),
    )
    write_json(
        out / "eval.json",
        {
            **result.__dict__,
            "output_dir": target.name,
            "trainable_pct": result.trainable_pct,
            "best_step": state.best_step,
            # one epoch's padding among computed positions, batched by length and at random; `grouped` says which ran
            "padding_share": padding_report(rows, cfg.batch_size, seed, cfg.group_by_length),
            **(eval_info or {}),
        },
    )
    return result
