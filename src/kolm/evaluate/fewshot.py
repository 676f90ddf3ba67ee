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

from kolm.data.batching import pad_rows, pad_token_id
from kolm.evaluate.prompts import FewShotTemplate
from kolm.metrics.classification import classification_report

__all__ = [
    "score_pairs",
    "continuation_logprobs",
    "label_scores",
    "pick_shots",
    "calibration_prior",
    "evaluate_fewshot",
]


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


def _forward_padded(model: Any, rows: list[list[int]], pad: int, device: str) -> Any:
    """Log-probabilities (N, T, V) of right-padded rows; real positions see exactly their unpadded prefix."""
    import torch

    ids, mask = pad_rows(rows, pad, left=False)  # (N, T) each
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()  # (N, T, V)
    return torch.log_softmax(logits, dim=-1)


def score_pairs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    device: str = "cpu",
    max_length: int = 0,
    batch_size: int = 16,
) -> list[float]:
    """Summed log P(continuation | context) for every (context, continuation) pair, in padded batches.

    When every continuation is a single token (긍정/부정 often are), each distinct
    context needs one row only: the next-token distribution at its last position.
    """
    import torch

    enc = [_split_encode(tokenizer, c, x) for c, x in pairs]
    if max_length:  # keep the end: the query and the label word matter most, drop the oldest shots' tokens
        enc = [
            (ctx[-(max_length - len(cont)) :] if len(cont) < max_length else [], cont[-max_length:])
            for ctx, cont in enc
        ]
    pad = pad_token_id(tokenizer)
    out: list[float] = []
    if all(len(cont) == 1 and ctx for ctx, cont in enc):
        contexts = list(dict.fromkeys(tuple(ctx) for ctx, _ in enc))
        last: dict[tuple[int, ...], Any] = {}
        for i in range(0, len(contexts), batch_size):
            chunk = contexts[i : i + batch_size]
            logp = _forward_padded(model, [list(c) for c in chunk], pad, device)
            for j, c in enumerate(chunk):
                last[c] = logp[j, len(c) - 1]  # (V,) distribution of the token after the context
        return [float(last[tuple(ctx)][cont[0]]) for ctx, cont in enc]
    for i in range(0, len(enc), batch_size):
        chunk = enc[i : i + batch_size]
        rows = [ctx + cont for ctx, cont in chunk]
        logp = _forward_padded(model, rows, pad, device)
        for j, ((_ctx, cont), r) in enumerate(zip(chunk, rows)):
            n = len(r)
            positions = torch.arange(n - len(cont) - 1, n - 1)  # logits at t predict token t+1
            out.append(float(logp[j, positions, torch.tensor(cont)].sum()))
    return out


def continuation_logprobs(
    model: Any, tokenizer: Any, context: str, continuations: Sequence[str], device: str = "cpu", max_length: int = 0
) -> list[float]:
    """Summed log P(continuation | context) for each continuation."""
    return score_pairs(model, tokenizer, [(context, c) for c in continuations], device, max_length)


def label_scores(
    model: Any,
    tokenizer: Any,
    template: FewShotTemplate,
    text: str,
    shots: Sequence[tuple[str, Any]],
    device: str = "cpu",
    max_length: int = 0,
) -> list[float]:
    """Log-likelihood of each label's verbalizer (template label order) after the k-shot prompt."""
    context = template.prompt(text, list(shots))
    return continuation_logprobs(
        model, tokenizer, context, [template.target(lab) for lab in template.labels], device, max_length
    )


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


def calibration_prior(
    model: Any,
    tokenizer: Any,
    template: FewShotTemplate,
    shots: Sequence[tuple[str, Any]],
    device: str = "cpu",
    max_length: int = 0,
) -> list[float]:
    """Mean label distribution for the template's content-free inputs."""
    dists = [
        _normalize(label_scores(model, tokenizer, template, cf, shots, device, max_length))
        for cf in template.content_free
    ]
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
    targets = [template.target(lab) for lab in labels]
    scores: list[float] = []
    chunk = 8  # examples per batch: bigger matrices on CPU, and a progress bar that still moves
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        pairs = [(template.prompt(text, shots), t) for text, _ in part for t in targets]
        scores += score_pairs(model, tokenizer, pairs, device, max_length, batch_size=len(pairs))
        if progress is not None:
            progress.advance(len(part))
    for i, (text, label) in enumerate(examples):
        probs = _normalize(scores[i * len(labels) : (i + 1) * len(labels)])
        gold.append(str(label))
        raw.append(labels[max(range(len(labels)), key=lambda i: probs[i])])
        rec = {"text": text, "label": str(label), "probs": dict(zip(labels, probs)), "pred": raw[-1]}
        if prior is not None:
            adj = [p / max(q, 1e-12) for p, q in zip(probs, prior)]
            cal.append(labels[max(range(len(labels)), key=lambda i: adj[i])])
            rec["pred_calibrated"] = cal[-1]
        records.append(rec)
    out: dict[str, Any] = {
        "k": k,
        "shots": [list(s) for s in shots],
        "raw": classification_report(gold, raw, labels),
        "predictions": records,
    }
    if prior is not None:
        out["prior"] = dict(zip(labels, prior))
        out["calibrated"] = classification_report(gold, cal, labels)
    return out
