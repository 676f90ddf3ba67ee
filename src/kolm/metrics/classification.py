"""Classification metrics: accuracy, macro-F1, per-class scores, confusion matrix (scikit-learn underneath).

The one entry point most callers need is::

    classification_report(y_true, y_pred, labels) -> dict

`y_true`/`y_pred` hold either label names or integer indices into `labels`
(the fine-tuning loop passes argmax indices). A value outside the declared
label set raises `kolm.errors.DataError` naming the value and the set, because
silently counting it as "wrong" would hide a label-mapping bug. Every declared
label gets a row, even one that never occurs: a class with no predicted and no
gold examples scores 0 (scikit-learn's `zero_division=0`), so macro-F1 is the
mean over the declared set, as `f1_score(average="macro", labels=...)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kolm.errors import DataError

__all__ = [
    "normalize_labels",
    "accuracy",
    "confusion_matrix",
    "per_class",
    "macro_f1",
    "classification_report",
    "confusion_markdown",
]


def normalize_labels(values: Sequence[Any], labels: Sequence[Any], what: str = "labels") -> list[int]:
    """Map label names or indices to indices into `labels`; raise DataError on unknown values."""
    names = [str(x) for x in labels]
    index = {name: i for i, name in enumerate(names)}
    out: list[int] = []
    for v in values:
        key = str(v)
        if key in index:  # a name (or an index whose text is also a name, e.g. labels ["0", "1"])
            out.append(index[key])
        elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(names):
            out.append(v)
        else:
            raise DataError(
                f"{what}: value {v!r} is not in the declared label set {names}; "
                "fix the data or declare the label (e.g. finetune.classify.labels / eval labels)"
            )
    return out


def _check(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> tuple[list[int], list[int]]:
    if len(y_true) != len(y_pred):
        raise DataError(f"gold and predicted labels differ in length ({len(y_true)} vs {len(y_pred)})")
    if not labels:
        raise DataError("empty label set: declare the labels of the task")
    return normalize_labels(y_true, labels, "gold label"), normalize_labels(y_pred, labels, "predicted label")


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None = None) -> float:
    """Share of exact matches (0.0 for empty input). With `labels`, values are checked against them."""
    from sklearn.metrics import accuracy_score

    if labels is not None:
        t, p = _check(y_true, y_pred, labels)
    else:
        t, p = list(y_true), list(y_pred)
        if len(t) != len(p):
            raise DataError(f"gold and predicted labels differ in length ({len(t)} vs {len(p)})")
    return float(accuracy_score(t, p)) if t else 0.0


def _indexed_confusion(t: list[int], p: list[int], n: int) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix as sk_confusion

    if not t:
        return [[0] * n for _ in range(n)]
    return sk_confusion(t, p, labels=list(range(n))).tolist()


def confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> list[list[int]]:
    """Counts `m[gold][predicted]` in the order of `labels` (rows gold, columns predicted, as sklearn)."""
    t, p = _check(y_true, y_pred, labels)
    return _indexed_confusion(t, p, len(labels))


def _per_class(t: list[int], p: list[int], names: list[str]) -> dict[str, dict[str, float]]:
    from sklearn.metrics import precision_recall_fscore_support

    if not t:
        return {name: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for name in names}
    prec, rec, f1, support = precision_recall_fscore_support(
        t, p, labels=list(range(len(names))), average=None, zero_division=0
    )
    return {
        name: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(names)
    }


def per_class(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every declared label (0 where undefined)."""
    t, p = _check(y_true, y_pred, labels)
    return _per_class(t, p, [str(x) for x in labels])


def macro_f1(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> float:
    """Unweighted mean of per-class F1 over every declared label."""
    scores = per_class(y_true, y_pred, labels)
    return sum(s["f1"] for s in scores.values()) / len(scores)


def classification_report(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    """All classification metrics in one JSON-ready dict.

    Keys: `accuracy`, `macro_f1`, `n`, `labels` (names, str), `per_class`
    ({label: {precision, recall, f1, support}}), `confusion_matrix` (rows gold,
    columns predicted, in `labels` order).
    """
    t, p = _check(y_true, y_pred, labels)
    names = [str(x) for x in labels]
    pc = _per_class(t, p, names)
    return {
        "accuracy": accuracy(t, p),
        "macro_f1": sum(s["f1"] for s in pc.values()) / len(pc),
        "n": len(t),
        "labels": names,
        "per_class": pc,
        "confusion_matrix": _indexed_confusion(t, p, len(names)),
    }


def confusion_markdown(report: dict[str, Any]) -> str:
    """The confusion matrix of a `classification_report` as a Markdown table."""
    labels, cm = report["labels"], report["confusion_matrix"]
    lines = ["| gold \\ predicted | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    lines += [f"| {labels[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
    return "\n".join(lines)
