"""A KLUE task model's predictions on examples, and their official scores.

The one implementation fine-tuning (validation and test scores) and
`kolm eval --suite klue` share: the same encoding (`klue_batch`), the same
batching, the same metrics (`kolm.metrics.klue`). Each task names the model
head it needs (`MODEL_TASK`, a `load_model(task=...)` value), its label set
and its headline metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kolm.data.batching import encode_for_classifier, pad_rows, pad_token_id
from kolm.data.klue import NER_TAGS, RE_LABELS, read_klue
from kolm.data.klue_batch import (
    best_answer,
    collate_spans,
    collate_tokens,
    encode_mrc,
    encode_ner,
    mark_entities,
    sts_text,
    token_tags_to_chars,
)
from kolm.errors import DataError

__all__ = ["TaskSpec", "SPECS", "task_labels", "load_examples", "score", "PredictSettings"]


@dataclass(frozen=True)
class TaskSpec:
    """What a KLUE task needs of a model and what it reports."""

    model_task: str  # `load_model(task=...)`
    headline: str  # the metric early stopping watches and tables show first
    metrics: tuple[str, ...]  # the metrics of the KLUE paper's table, in its order


SPECS: dict[str, TaskSpec] = {
    "klue-sts": TaskSpec("classify", "pearson", ("pearson", "f1")),
    "klue-ner": TaskSpec("token-classify", "entity_f1", ("entity_f1", "char_f1")),
    "klue-mrc": TaskSpec("span-qa", "exact_match", ("exact_match", "rouge_w")),
    "klue-re": TaskSpec("classify", "micro_f1", ("micro_f1", "auprc")),
}


@dataclass(frozen=True)
class PredictSettings:
    """How inputs are cut and batched (the fine-tuning run's values, recorded in kolm_task.json)."""

    seq_len: int = 128
    doc_stride: int = 32
    max_answer_tokens: int = 30
    batch_size: int = 16


def task_labels(task: str) -> list[str]:
    """The output names of a task's head: one regression output for STS, the tag or relation set otherwise."""
    return {"klue-sts": ["similarity"], "klue-ner": list(NER_TAGS), "klue-re": list(RE_LABELS)}.get(task, [])


def load_examples(task: str, path: str | Path, limit: int = 0) -> list[Any]:
    """The examples of `task` in `path` (the first `limit`, 0 = all); DataError when there are none."""
    examples = read_klue(task, path)
    if limit:
        examples = examples[:limit]
    if not examples:
        raise DataError(f"{path} holds no {task.upper()} examples")
    return examples


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _classify_logits(model: Any, tokenizer: Any, texts: Sequence[str], st: PredictSettings) -> list[list[float]]:
    import torch

    pad, device, out = pad_token_id(tokenizer), _device(model), []
    for i in range(0, len(texts), st.batch_size):
        ids, mask = pad_rows(
            [encode_for_classifier(tokenizer, t, st.seq_len) for t in texts[i : i + st.batch_size]], pad, left=True
        )
        with torch.no_grad():
            out += model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu().tolist()
    return out


def _ner(model: Any, tokenizer: Any, sentences: Sequence[Any], st: PredictSettings) -> list[list[str]]:
    import torch

    rows = encode_ner(tokenizer, sentences, NER_TAGS, st.seq_len)
    pad, device, out = pad_token_id(tokenizer), _device(model), []
    for i in range(0, len(rows), st.batch_size):
        chunk = rows[i : i + st.batch_size]
        batch = collate_tokens(chunk, pad)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        for row, pred, s in zip(chunk, logits.logits.argmax(-1).tolist(), sentences[i : i + st.batch_size]):
            tags = [NER_TAGS[k] for k in pred[: len(row["input_ids"])]]
            out.append(token_tags_to_chars(s.chars, row["spans"], tags))
    return out


def _mrc(model: Any, tokenizer: Any, examples: Sequence[Any], st: PredictSettings) -> dict[str, str]:
    import torch

    windows = encode_mrc(tokenizer, examples, st.seq_len, st.doc_stride)
    pad, device = pad_token_id(tokenizer), _device(model)
    starts: list[list[float]] = []
    ends: list[list[float]] = []
    for i in range(0, len(windows), st.batch_size):
        batch = collate_spans(windows[i : i + st.batch_size], pad)
        with torch.no_grad():
            out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        starts += out.start_logits.float().cpu().tolist()
        ends += out.end_logits.float().cpu().tolist()
    by_example: dict[int, list[int]] = {}
    for k, w in enumerate(windows):
        by_example.setdefault(w.example, []).append(k)
    preds = {}
    for n, ex in enumerate(examples):
        ks = by_example.get(n, [])
        preds[ex.id] = best_answer(
            ex.context, [windows[k] for k in ks], [starts[k] for k in ks], [ends[k] for k in ks], st.max_answer_tokens
        )
    return preds


def score(
    task: str, model: Any, tokenizer: Any, examples: Sequence[Any], settings: PredictSettings | None = None
) -> tuple[dict[str, Any], list[Any]]:
    """(official metrics in %, one prediction per example) of a task model on `examples`."""
    from kolm.metrics.klue import mrc_scores, ner_scores, re_scores, sts_scores

    st = settings or PredictSettings()
    was_training = model.training
    model.eval()
    try:
        if task == "klue-sts":
            preds = [row[0] for row in _classify_logits(model, tokenizer, [sts_text(e) for e in examples], st)]
            metrics = sts_scores(preds, [e.score for e in examples], [e.binary for e in examples])
        elif task == "klue-re":
            import torch

            logits = _classify_logits(model, tokenizer, [mark_entities(e) for e in examples], st)
            probs = torch.tensor(logits).softmax(-1).tolist()
            metrics = re_scores([e.label for e in examples], probs, RE_LABELS)
            preds = [RE_LABELS[max(range(len(p)), key=p.__getitem__)] for p in probs]
        elif task == "klue-ner":
            preds = _ner(model, tokenizer, examples, st)
            metrics = ner_scores([s.tags for s in examples], preds, NER_TAGS)
        elif task == "klue-mrc":
            answers = _mrc(model, tokenizer, examples, st)
            metrics = mrc_scores(answers, {e.id: [a for a, _ in e.answers] for e in examples})
            preds = [answers[e.id] for e in examples]
        else:
            raise DataError(f"unknown KLUE task {task!r}; choose one of {', '.join(SPECS)}")
    finally:
        model.train(was_training)
    return metrics, preds
