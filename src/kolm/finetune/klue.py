"""One KLUE fine-tuning run: STS, NER, MRC or RE on the official files, scored with the official metrics.

The same run as `trainer.finetune` (one loader, PEFT methods, the pretraining
loop with validation, early stopping and the best weights kept), with the
task's own head, encoding and metric:

| task | head (`load_model(task=...)`) | input | validation metric |
| --- | --- | --- | --- |
| klue-sts | classify, one output (regression, MSE) | sentence1 \\n sentence2 EOS | Pearson r |
| klue-re | classify, 30 relations | sentence with typed entity markers, EOS | micro-F1 without no_relation |
| klue-ner | token-classify, 13 BIO tags | the sentence's tokens | entity-level F1 |
| klue-mrc | span-qa, start/end | question, context window, EOS | exact match |

Writes `adapter/` (or `model/`) with the tokenizer and `kolm_task.json`
(labels and the input settings the suite scores with), `metrics.jsonl` and
`eval.json` with validation and test scores.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kolm.data.batching import collate, pad_token_id
from kolm.data.klue import KlueDataConfig
from kolm.data.klue_batch import collate_spans, collate_tokens, encode_mrc, encode_ner, encode_re, encode_sts
from kolm.data.klue_predict import SPECS, PredictSettings, load_examples, score, task_labels
from kolm.errors import DataError, KolmError
from kolm.files import write_json
from kolm.finetune.config import FinetuneConfig
from kolm.finetune.methods import DEFAULT_LR, check_method_available, peft_config
from kolm.finetune.trainer import FinetuneResult, _PeakRSS, count_parameters
from kolm.progress import Progress
from kolm.runtime import seed_everything

__all__ = ["finetune_klue", "klue_splits"]


def klue_splits(data: KlueDataConfig, task: str, seed: int = 0) -> tuple[list[Any], list[Any], list[Any]]:
    """Train, validation and test examples of `task`; validation is a tenth of train when no file is given."""
    train_path = data.files(task, "train")
    if train_path is None:
        short = task.removeprefix("klue-")
        raise DataError(f"{task}: no training file; set finetune.klue.dir or finetune.klue.{short}.train")
    train = load_examples(task, train_path)
    val_path, test_path = data.files(task, "validation"), data.files(task, "test")
    if val_path is not None and val_path.is_file():
        validation = load_examples(task, val_path, data.max_eval)
    elif getattr(data, task.removeprefix("klue-")).validation:  # given, but not there
        raise DataError(f"file not found: {val_path}; check finetune.klue.{task.removeprefix('klue-')}.validation")
    else:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_val = max(1, len(train) // 10)
        validation = [train[i] for i in order[:n_val]][: data.max_eval or None]
        train = [train[i] for i in order[n_val:]]
    test = load_examples(task, test_path, data.max_eval) if test_path is not None else []
    if data.max_train:
        train = train[: data.max_train]
    if not train:
        raise DataError(f"{train_path}: too few {task.upper()} examples to hold out a validation split")
    return train, validation, test


def _encode(task: str, tokenizer: Any, examples: Sequence[Any], cfg: FinetuneConfig) -> list[Any]:
    from kolm.data.klue import NER_TAGS

    if task == "klue-sts":
        return encode_sts(tokenizer, examples, cfg.seq_len)
    if task == "klue-re":
        return encode_re(tokenizer, examples, cfg.seq_len)
    if task == "klue-ner":
        return encode_ner(tokenizer, examples, NER_TAGS, cfg.seq_len)
    return encode_mrc(tokenizer, examples, cfg.seq_len, cfg.klue.doc_stride)


def _collate_fn(task: str, pad_id: int) -> Callable[[Sequence[Any]], dict[str, Any]]:
    if task == "klue-ner":
        return lambda rows: collate_tokens(rows, pad_id)
    if task == "klue-mrc":
        return lambda rows: collate_spans(rows, pad_id)
    return lambda rows: collate(rows, pad_id, left=True)  # pooled on the last token: pad on the left


def _batches(rows: list[Any], batch_size: int, fn: Callable[[Sequence[Any]], dict], seed: int) -> Iterator[dict]:
    """Endless shuffled batches, reshuffled each epoch with a fixed seed."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    size = min(batch_size, len(rows))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - size + 1, size):
            yield fn([rows[j] for j in order[i : i + size]])


def finetune_klue(
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
    """Fine-tune `base_model` (a kolm or any HF causal LM dir) on KLUE `task` with `method`; write to `out`."""
    from kolm.models.loading import load_model, load_tokenizer, write_task_info
    from kolm.train.loop import LoopSettings, resolve_precision, train
    from kolm.train.optim import build_adamw
    from kolm.train.schedule import build_scheduler

    if task not in SPECS:
        raise KolmError(f"unknown KLUE task {task!r}; choose one of {', '.join(SPECS)}")
    spec = SPECS[task]
    progress = progress or Progress(enabled=False)
    check_method_available(method, device)
    base = Path(base_model).resolve()
    if not (base / "config.json").exists():
        raise KolmError(f"base model not found: {base_model} (run `kolm pretrain` first, or set finetune.base_model)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    train_ex, val_ex, test_ex = klue_splits(cfg.klue, task, seed)
    val_file = cfg.klue.files(task, "validation")
    val_from_file = val_file is not None and val_file.is_file()  # recorded: `kolm eval --suite klue` scores on it
    tokenizer = load_tokenizer(base)
    pad_id = pad_token_id(tokenizer)
    rows = _encode(task, tokenizer, train_ex, cfg)
    labels = task_labels(task)
    settings = PredictSettings(cfg.seq_len, cfg.klue.doc_stride, cfg.klue.max_answer_tokens)

    quant = "nf4" if method == "qlora" else None
    model, _ = load_model(
        base,
        task=spec.model_task,
        device=device,
        labels=labels or None,
        pad_token_id=pad_id if spec.model_task == "classify" else None,
        quant=quant,
    )
    if spec.model_task == "classify" and len(labels) == 1:
        model.config.problem_type = "regression"
    if quant is not None:
        import peft

        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    pc = peft_config(method, spec.model_task, cfg, model.config)
    if pc is not None:
        import peft

        model = peft.get_peft_model(model, pc)
    if quant is None:
        model.to(device)
    model.train()
    trainable, total = count_parameters(model)

    steps = cfg.max_steps
    if cfg.epochs > 0:
        steps = max(1, math.ceil(cfg.epochs * len(rows) / cfg.batch_size))
    metrics_path = out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)

    def evaluate(m: Any, step: int) -> dict[str, float]:
        val, _ = score(task, m, tokenizer, val_ex, settings)
        return {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}

    loop = LoopSettings(
        max_steps=steps,
        grad_clip=1.0,
        precision=resolve_precision("auto", device),
        log_every=10,
        eval_every=cfg.eval_every,
        save_every=0,
        resume=None,
        best_metric=f"val_{spec.headline}",
        lower_is_better=False,
        patience=cfg.patience,
        keep_best=True,
    )
    optimizer = build_adamw(model, lr=cfg.lr or DEFAULT_LR[method], weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, "cosine", min(cfg.warmup_steps, max(1, steps // 10)), steps)
    batches = _batches(rows, cfg.batch_size, _collate_fn(task, pad_id), seed)
    t0 = time.perf_counter()
    with _PeakRSS(device) as mem, progress.task(f"finetune {task}/{method}", total=steps) as bar:
        state = train(
            model,
            batches,
            optimizer,
            scheduler,
            settings=loop,
            device=device,
            evaluate=evaluate,
            metrics_path=metrics_path,
            progress=bar,
            log=progress.log,
        )
    wall = time.perf_counter() - t0
    best = state.best_eval or evaluate(model, state.step)
    validation = {k.removeprefix("val_"): v for k, v in best.items()}
    test = score(task, model, tokenizer, test_ex, settings)[0] if test_ex else {}

    target = out / ("model" if method == "full" else "adapter")
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    extra = {
        "seq_len": cfg.seq_len,
        "doc_stride": cfg.klue.doc_stride,
        "max_answer_tokens": cfg.klue.max_answer_tokens,
        "model_task": spec.model_task,
        "validation_file": str(val_file.resolve()) if val_file is not None and val_from_file else None,
    }
    write_task_info(target, task, method, labels, base, extra)
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
        test=test,
        output_dir=str(target),
    )
    write_json(
        out / "eval.json",
        {
            **result.__dict__,
            "output_dir": target.name,
            "trainable_pct": result.trainable_pct,
            "best_step": state.best_step,
            "headline": spec.headline,
        },
    )
    return result
