"""Zero/one/k-shot classification by comparing the log-likelihood of label words.

For each test text we build a prompt of k labelled demonstrations followed by
the query ("리뷰: ...\\n감정:") and score every label's verbalizer continuation
(" 긍정", " 부정"): the sum of the log-probabilities of its tokens given the
prompt, as lm-evaluation-harness does for multiple choice. The prediction is
the label with the highest score. No generation, no parsing of free text.

Calibration (Zhao et al., 2021, "Calibrate Before Use"): a model often prefers
one label word whatever the input (majority-label and recency bias of the
demonstrations, plain word frequency). We measure that prior with content-free
inputs ("N/A", "") in the same prompt, and divide it out: calibrated
p(y|x) ∝ p(y|x) / p(y|content-free). Both raw and calibrated accuracies are reported.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from kolm.evaluate.classification import classification_report
from kolm.evaluate.prompts import FewShotTemplate

__all__ = ["continuation_logprobs", "label_scores", "pick_shots", "calibration_prior", "evaluate_fewshot"]


def _split_encode(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation such that context+continuation tokenizes as one text.

    Tokenizing the joined string and cutting at the context length keeps the
    merges a real text would get (" 긍정" may merge with the space); if the
    context's own tokens are not a prefix of the whole, fall back to encoding apart.
    """
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
        cont = whole[len(ctx) :]
    else:
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and (not ctx or ctx[0] != bos):
        ctx = [bos, *ctx]
    return ctx, cont


def continuation_logprobs(
    model: Any, tokenizer: Any, context: str, continuations: Sequence[str], device: str = "cpu", max_length: int = 0
) -> list[float]:
    """Summed log P(continuation | context) for each continuation, in one batched forward pass."""
    import torch

    pairs = [_split_encode(tokenizer, context, c) for c in continuations]
    if all(len(cont) == 1 for _, cont in pairs) and all(ctx == pairs[0][0] for ctx, _ in pairs):
        # every label word is one token after the same context (긍정/부정 usually are):
        # one forward pass over the context and a read of the next-token distribution
        ctx_ids = pairs[0][0][-max_length:] if max_length else pairs[0][0]
        with torch.no_grad():
            last = model(input_ids=torch.tensor([ctx_ids], device=device)).logits[0, -1].float()  # (V,)
        logp = torch.log_softmax(last, dim=-1)
        return [float(logp[cont[0]]) for _, cont in pairs]
    rows = [ctx + cont for ctx, cont in pairs]
    if max_length:  # keep the end: the query and the label word matter most, drop the oldest shots' tokens
        rows = [r[-max_length:] for r in rows]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):  # right padding: positions of real tokens stay the same as unpadded
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()  # (N, T, V)
    logp = torch.log_softmax(logits, dim=-1)
    out = []
    for i, ((_, cont), r) in enumerate(zip(pairs, rows)):
        n = len(r)
        positions = torch.arange(n - len(cont) - 1, n - 1)  # logits at t predict token t+1
        targets = torch.tensor(r[n - len(cont) :])
        out.append(float(logp[i, positions, targets].sum()))
    return out


def label_scores(model: Any, tokenizer: Any, template: FewShotTemplate, text: str, shots: Sequence[tuple[str, Any]], device: str = "cpu", max_length: int = 0) -> list[float]:
    """Log-likelihood of each label's verbalizer (template label order) after the k-shot prompt."""
    context = template.prompt(text, list(shots))
    return continuation_logprobs(model, tokenizer, context, [template.target(lab) for lab in template.labels], device, max_length)


def _normalize(scores: Sequence[float]) -> list[float]:
    """Probabilities over the labels only (softmax of log-likelihoods)."""
    m = max(scores)
    exps = [math.exp(s - m) for s in scores]
    z = sum(exps)
    return [e / z for e in exps]


def pick_shots(pool: Sequence[tuple[str, Any]], k: int, labels: Sequence[str], seed: int = 0) -> list[tuple[str, Any]]:
    """k demonstrations, balanced over labels as far as possible, in a seeded random order."""
    if k <= 0:
        return []
    rng = random.Random(seed)
    by_label: dict[str, list[tuple[str, Any]]] = {str(lab): [] for lab in labels}
    for text, lab in pool:
        if str(lab) in by_label:
            by_label[str(lab)].append((text, lab))
    for items in by_label.values():
        rng.shuffle(items)
    shots: list[tuple[str, Any]] = []
    while len(shots) < k and any(by_label.values()):
        for items in by_label.values():  # round-robin so no label dominates the prompt
            if items and len(shots) < k:
                shots.append(items.pop())
    rng.shuffle(shots)  # avoid always ending on the same label (recency bias)
    return shots


def calibration_prior(model: Any, tokenizer: Any, template: FewShotTemplate, shots: Sequence[tuple[str, Any]], device: str = "cpu", max_length: int = 0) -> list[float]:
    """Mean label distribution for the template's content-free inputs."""
    dists = [_normalize(label_scores(model, tokenizer, template, cf, shots, device, max_length)) for cf in template.content_free]
    return [sum(d[i] for d in dists) / len(dists) for i in range(len(template.labels))]


def evaluate_fewshot(
    model: Any,
    tokenizer: Any,
    template: FewShotTemplate,
    examples: Sequence[tuple[str, Any]],
    shot_pool: Sequence[tuple[str, Any]],
    k: int,
    seed: int = 0,
    calibrate: bool = True,
    device: str = "cpu",
    max_length: int = 0,
    progress: Any | None = None,
) -> dict[str, Any]:
    """Accuracy/macro-F1 of k-shot classification of `examples` ((text, label) pairs).

    The same k demonstrations (drawn from `shot_pool` with `seed`) are used for
    every example. Returns the raw report plus, with `calibrate`, a calibrated
    one and the prior; `predictions` holds per-example label probabilities.
    """
    labels = template.labels
    shots = pick_shots(shot_pool, k, labels, seed)
    prior = calibration_prior(model, tokenizer, template, shots, device, max_length) if calibrate else None
    gold, raw, cal, records = [], [], [], []
    for text, label in examples:
        probs = _normalize(label_scores(model, tokenizer, template, text, shots, device, max_length))
        gold.append(str(label))
        raw.append(labels[max(range(len(labels)), key=lambda i: probs[i])])
        rec = {"text": text, "label": str(label), "probs": dict(zip(labels, probs)), "pred": raw[-1]}
        if prior is not None:
            adj = [p / max(q, 1e-12) for p, q in zip(probs, prior)]
            cal.append(labels[max(range(len(labels)), key=lambda i: adj[i])])
            rec["pred_calibrated"] = cal[-1]
        records.append(rec)
        if progress is not None:
            progress.advance(1)
    out: dict[str, Any] = {"k": k, "shots": [list(s) for s in shots], "raw": classification_report(gold, raw, labels), "predictions": records}
    if prior is not None:
        out["prior"] = dict(zip(labels, prior))
        out["calibrated"] = classification_report(gold, cal, labels)
    return out
