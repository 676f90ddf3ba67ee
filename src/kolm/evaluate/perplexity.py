"""Perplexity, bits per character and bits per byte of a causal LM on held-out text.

The scoring lives here (a forward pass per window); the arithmetic of
perplexity and bits per character is `kolm.metrics.lm`, where the reasons for
reporting bits per character next to perplexity are written down.

Long documents are scored with a sliding window: windows of `max_length`
tokens advance by `stride`; each token is scored once, in the first window
where it is not context-only, so every prediction past the first window still
sees `max_length - stride` tokens of context. When a document fits in one
window this is exactly the full-context score.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kolm.errors import DataError
from kolm.metrics.lm import LMScore

__all__ = ["LMScore", "document_nll", "perplexity", "context_length"]


def context_length(model: Any, default: int = 1024, cap: int = 4096) -> int:
    """The model's maximum sequence length from its config, at most `cap`.

    The cap keeps windows affordable for downloaded models that declare 128K
    positions; set eval.max_length to go beyond it.
    """
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_len", "block_size"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return min(value, cap)
    return default


def _encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids with a leading BOS when the tokenizer has one, so the first real token is scored too."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def document_nll(model: Any, ids: list[int], max_length: int, stride: int, device: str = "cpu") -> tuple[float, int]:
    """Summed NLL (nats) of tokens ids[1:] under `model` with a sliding window; returns (nll, scored tokens)."""
    import torch

    if stride < 1 or stride > max_length:
        raise ValueError(f"stride must be in 1..max_length ({max_length}), got {stride}")
    total, count = 0.0, 0
    scored_until = 1  # position of the next token still to score (token 0 has no context)
    begin = 0
    n = len(ids)
    while scored_until < n:
        end = min(begin + max_length, n)
        window = torch.tensor([ids[begin:end]], device=device)  # (1, T)
        with torch.no_grad():
            logits = model(input_ids=window).logits.float()  # (1, T, V)
        logp = torch.log_softmax(logits[0, :-1], dim=-1)  # predictions for positions begin+1 .. end-1
        targets = window[0, 1:]
        first = scored_until - begin - 1  # index into targets of the first new token
        picked = logp[first:].gather(-1, targets[first:, None]).squeeze(-1)
        total -= float(picked.sum())
        count += int(picked.numel())
        scored_until = end
        if end == n:
            break
        begin = end - max_length + stride if end - max_length + stride > begin else begin + stride
    return total, count


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Iterable[str],
    max_length: int = 0,
    stride: int = 0,
    device: str = "cpu",
    max_docs: int = 0,
    progress: Any | None = None,
) -> dict[str, float | int]:
    """Perplexity, bpc and bpb of `texts` (exp of the mean token NLL over all documents).

    `max_length` 0 = the model's context length; `stride` 0 = half of it.
    Raises DataError when there is no text to score.
    """
    max_length = max_length or context_length(model)
    stride = stride or max(1, max_length // 2)
    stride = min(stride, max_length - 1) if max_length > 1 else 1
    model.eval()
    score = LMScore()
    for text in texts:
        if max_docs and score.docs >= max_docs:
            break
        if not text or not text.strip():
            continue
        ids = _encode(tokenizer, text)
        if len(ids) < 2:
            continue
        nll, count = document_nll(model, ids, max_length, stride, device)
        score.add(nll, count, text)
        if progress is not None:
            progress.advance(1)
    if score.tokens == 0:
        raise DataError(
            "no text to score for perplexity (empty validation split?); check the data stage output or eval.lm_file"
        )
    return {**score.as_dict(), "max_length": max_length, "stride": stride}
