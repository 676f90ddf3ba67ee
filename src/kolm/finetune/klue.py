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

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kolm.data.batching import collate, pad_token_id
from kolm.data.klue import KlueDataConfig
from kolm.data.klue_batch import collate_spans, collate_tokens, encode_mrc, encode_ner, encode_re, encode_sts
from kolm.data.klue_predict import SPECS, PredictSettings, load_examples, score, task_labels
from kolm.errors import DataError, KolmError
from kolm.finetune.config import FinetuneConfig
from kolm.finetune.trainer import FinetuneResult, load_trainable, start_run, train_and_save
from kolm.progress import Progress

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
    from kolm.models.loading import load_tokenizer

    if task not in SPECS:
        raise KolmError(f"unknown KLUE task {task!r}; choose one of {', '.join(SPECS)}")
    spec = SPECS[task]
    base, out = start_run(base_model, out, method, device, seed)
    train_ex, val_ex, test_ex = klue_splits(cfg.klue, task, seed)
    val_file = cfg.klue.files(task, "validation")
    val_from_file = val_file is not None and val_file.is_file()  # recorded: `kolm eval --suite klue` scores on it
    tokenizer = load_tokenizer(base)
    pad_id = pad_token_id(tokenizer)
    rows = _encode(task, tokenizer, train_ex, cfg)
    labels = task_labels(task)
    settings = PredictSettings(cfg.seq_len, cfg.klue.doc_stride, cfg.klue.max_answer_tokens)
    regression = spec.model_task == "classify" and len(labels) == 1
    model = load_trainable(
        base, cfg, method, model_task=spec.model_task, peft_task=spec.model_task, labels=labels, pad_id=pad_id,
        device=device, regression=regression,
    )  # fmt: skip

    def evaluate(m: Any, step: int) -> dict[str, float]:
        val, _ = score(task, m, tokenizer, val_ex, settings)
        return {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}

    task_info = {
        "seq_len": cfg.seq_len,
        "doc_stride": cfg.klue.doc_stride,
        "max_answer_tokens": cfg.klue.max_answer_tokens,
        "model_task": spec.model_task,
        "validation_file": str(val_file.resolve()) if val_file is not None and val_from_file else None,
    }
    return train_and_save(
        model,
        tokenizer,
        cfg,
        task=task,
        method=method,
        base=base,
        labels=labels,
        out=out,
        rows=rows,
        collate_fn=_collate_fn(task, pad_id),
        evaluate=evaluate,
        test=lambda m: score(task, m, tokenizer, test_ex, settings)[0] if test_ex else {},
        best_metric=f"val_{spec.headline}",
        lower_is_better=False,
        seed=seed,
        device=device,
        progress=progress,
        task_info=task_info,
        eval_info={"headline": spec.headline},
    )
