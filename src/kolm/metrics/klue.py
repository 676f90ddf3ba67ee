"""The official metrics of KLUE's STS, NER, MRC and RE, as the KLUE paper reports them (in %).

* STS: Pearson r of the predicted and gold similarity, and F1 of the
  paraphrase decision at the 3.0 threshold (gold: `binary-label`).
* NER: entity-level macro F1 over the entity types (seqeval's strict IOB2
  mode, as KLUE's baseline scores it: an entity is B-X followed by I-X ...; an
  I-X without its B-X is no entity; a span counts only when its start, end
  and type all match) and character-level macro F1 over all 13 tags, O
  included (a tag absent from both gold and predictions scores 1, KLUE's
  `zero_division=True`). The entity-level micro F1 is reported beside it.
* MRC: exact match and KLUE's "ROUGE-W" (the F1 of the longest common run
  of characters, as KLUE's baseline computes it) after KLUE's normalization
  (lower case, ASCII punctuation removed, whitespace runs as one space); the
  best over the gold answers, plus a SQuAD-style character-overlap F1. An
  unanswerable question's gold answer is "": only an empty prediction scores.
* RE: micro F1 over the relation classes without `no_relation`, and AUPRC:
  per class one-vs-rest, the area under the precision-recall curve
  (trapezoidal, `precision_recall_curve` + `auc` as KLUE's baseline computes
  it), averaged over the classes that occur in the gold labels (on the dev
  set, where every class occurs, that is KLUE's average over all 30).

Checked against the metric functions of KLUE's baseline code
(KLUE-benchmark/KLUE-baseline, `klue_baseline/metrics/functional.py`).
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "sts_scores",
    "entities",
    "entity_f1",
    "char_f1",
    "ner_scores",
    "normalize_answer",
    "exact_match",
    "answer_char_f1",
    "rouge_w",
    "mrc_scores",
    "re_scores",
]


def _pct(x: float) -> float:
    return round(100.0 * float(x), 4)


# ----------------------------------------------------------------------------
# STS


def sts_scores(pred: Sequence[float], gold: Sequence[float], gold_binary: Sequence[int] | None = None) -> dict:
    """{pearson, f1, n}: Pearson r x 100 and paraphrase F1 x 100 at the 3.0 threshold."""
    from scipy.stats import pearsonr
    from sklearn.metrics import f1_score

    if len(pred) != len(gold) or not gold:
        raise ValueError(f"sts_scores: {len(pred)} predictions for {len(gold)} gold scores")
    binary = list(gold_binary) if gold_binary is not None else [int(g >= 3.0) for g in gold]
    constant = len(set(pred)) < 2 or len(set(gold)) < 2
    r = 0.0 if constant else float(pearsonr(pred, gold).statistic)
    f1 = f1_score(binary, [int(p >= 3.0) for p in pred], zero_division=0)
    return {"pearson": _pct(r), "f1": _pct(f1), "n": len(gold)}


# ----------------------------------------------------------------------------
# NER


def entities(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """The (start, end exclusive, type) spans of a BIO tag sequence, strict IOB2 (seqeval's strict mode)."""
    spans: list[tuple[int, int, str]] = []
    start, kind = -1, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, t = tag.partition("-")
        if start >= 0 and not (prefix == "I" and t == kind):
            spans.append((start, i, kind))
            start, kind = -1, ""
        if prefix == "B":
            start, kind = i, t
    return spans


def _prf(hit: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision = hit / n_pred if n_pred else 0.0
    recall = hit / n_gold if n_gold else 0.0
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def entity_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Entity-level scores x 100 over sentences of tags; partial spans count as wrong.

    `f1` is the macro average of the per-type F1 over the types in gold or predictions (KLUE's headline);
    `micro_f1`, `precision` and `recall` pool all entities.
    """
    if len(gold) != len(pred):
        raise ValueError(f"entity_f1: {len(pred)} predicted sentences for {len(gold)} gold sentences")
    g = {(i, *s) for i, tags in enumerate(gold) for s in entities(tags)}
    p = {(i, *s) for i, tags in enumerate(pred) for s in entities(tags)}
    per_type = []
    for kind in sorted({e[3] for e in g | p}):
        gk, pk = {e for e in g if e[3] == kind}, {e for e in p if e[3] == kind}
        per_type.append(_prf(len(gk & pk), len(pk), len(gk))[2])
    precision, recall, micro = _prf(len(g & p), len(p), len(g))
    macro = sum(per_type) / len(per_type) if per_type else 0.0
    return {"f1": _pct(macro), "micro_f1": _pct(micro), "precision": _pct(precision), "recall": _pct(recall)}


def char_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], tags: Sequence[str]) -> float:
    """Character-level macro F1 x 100 over `tags` (KLUE passes all 13 tags, O included; `zero_division=1`)."""
    from sklearn.metrics import f1_score

    g = [t for s in gold for t in s]
    p = [t for s in pred for t in s]
    if len(g) != len(p):
        raise ValueError(f"char_f1: {len(p)} predicted characters for {len(g)} gold characters")
    return _pct(f1_score(g, p, labels=list(tags), average="macro", zero_division=1))


def ner_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], tags: Sequence[str]) -> dict:
    """{entity_f1 (macro), entity_micro_f1, char_f1, entity_precision, entity_recall, n}; `tags`: the tag set."""
    ent = entity_f1(gold, pred)
    return {
        "entity_f1": ent["f1"],
        "entity_micro_f1": ent["micro_f1"],
        "char_f1": char_f1(gold, pred, list(tags)),
        "entity_precision": ent["precision"],
        "entity_recall": ent["recall"],
        "n": len(gold),
    }


# ----------------------------------------------------------------------------
# MRC

_ASCII_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """KLUE-MRC normalization as KLUE's baseline: lower case, ASCII punctuation removed, whitespace runs as one space.

    (The baseline also substitutes a pattern of quote marks that, as written there, never matches.)
    """
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    return " ".join(text.split())


def exact_match(pred: str, golds: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals a normalized gold answer ("" for unanswerable)."""
    return float(any(normalize_answer(pred) == normalize_answer(g) for g in (list(golds) or [""])))


def answer_char_f1(pred: str, golds: Sequence[str]) -> float:
    """The best overlap F1 of the prediction's characters (spaces aside) against the gold answers' (SQuAD-style)."""
    best = 0.0
    p = normalize_answer(pred).replace(" ", "")
    for g in list(golds) or [""]:
        g = normalize_answer(g).replace(" ", "")
        if not p or not g:
            best = max(best, float(p == g))
            continue
        common = sum((Counter(p) & Counter(g)).values())
        if common:
            prec, rec = common / len(p), common / len(g)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def rouge_w(pred: str, golds: Sequence[str]) -> float:
    """KLUE-MRC's ROUGE-W as KLUE's baseline computes it: the F1 of the longest run of characters that the
    normalized prediction and a normalized gold answer share (precision over the prediction's length, recall
    over the answer's), the best over the gold answers; an unanswerable question scores 1 only for "".

    The name is KLUE's; Lin's weighted LCS (ROUGE-1.5.5's ROUGE-W) would also credit matches outside that run.
    """
    from difflib import SequenceMatcher

    best = 0.0
    p = normalize_answer(pred)
    for g in list(golds) or [""]:
        g = normalize_answer(g)
        if not g:
            best = max(best, float(p == g))
            continue
        run = SequenceMatcher(None, p, g).find_longest_match(0, len(p), 0, len(g)).size
        if run:
            precision, recall = run / len(p), run / len(g)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def mrc_scores(preds: dict[str, str], golds: dict[str, Sequence[str]]) -> dict:
    """{exact_match, rouge_w, char_f1, n} x 100 over the questions of `golds` (a missing prediction is "")."""
    if not golds:
        raise ValueError("mrc_scores: no questions")
    em = rw = f1 = 0.0
    for qid, answers in golds.items():
        pred = preds.get(qid, "")
        em += exact_match(pred, answers)
        rw += rouge_w(pred, answers)
        f1 += answer_char_f1(pred, answers)
    n = len(golds)
    return {"exact_match": _pct(em / n), "rouge_w": _pct(rw / n), "char_f1": _pct(f1 / n), "n": n}


# ----------------------------------------------------------------------------
# RE


def re_scores(gold: Sequence[int], probs: Sequence[Sequence[float]], labels: Sequence[str]) -> dict:
    """{micro_f1, auprc, accuracy, n} x 100: micro F1 without `no_relation`, AUPRC over the classes present."""
    import numpy as np
    from sklearn.metrics import auc, f1_score, precision_recall_curve

    scores = np.asarray(probs, dtype=float)  # (N, classes)
    if scores.shape != (len(gold), len(labels)):
        raise ValueError(
            f"re_scores: probabilities of shape {scores.shape} for {len(gold)} examples, {len(labels)} labels"
        )
    pred = scores.argmax(-1)
    y = np.asarray(gold)
    keep = [k for k, name in enumerate(labels) if name != "no_relation"]
    micro = f1_score(y, pred, labels=keep, average="micro", zero_division=0)
    per_class = []
    for k in range(len(labels)):
        if (y == k).any():
            precision, recall, _ = precision_recall_curve(y == k, scores[:, k])
            per_class.append(float(auc(recall, precision)))
    return {
        "micro_f1": _pct(micro),
        "auprc": _pct(sum(per_class) / len(per_class)) if per_class else 0.0,
        "accuracy": _pct(float((pred == y).mean())),
        "n": len(gold),
    }
