"""Choosing the next token from logits: repetition penalty, temperature, top-k, top-p, greedy.

All functions work on a batch of rows at once, (B, V) float logits, with no
Python loop over rows. The order follows Hugging Face's default processors
(penalty, temperature, top-k, top-p), so that with the same seed settings the
distributions are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kolm.errors import UsageError

__all__ = ["SamplingParams", "apply_repetition_penalty", "filter_top_k", "filter_top_p", "sample_next"]


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop. temperature 0 means greedy."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off; >1 discourages tokens already in the sequence (CTRL, Keskar et al. 2019)
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  # stop strings; the text is cut before them
    eos_token_ids: list[int] | None = None  # None = the tokenizer's/model's EOS
    include_stop: bool = False  # keep the stop string in the output text

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 0:
            problems.append("max_new_tokens must be >= 0")
        if self.temperature < 0:
            problems.append("temperature must be >= 0 (0 = greedy)")
        if self.top_k < 0:
            problems.append("top_k must be >= 0 (0 = off)")
        if not 0 < self.top_p <= 1:
            problems.append("top_p must be in (0, 1]")
        if self.repetition_penalty <= 0:
            problems.append("repetition_penalty must be > 0 (1 = off)")
        if problems:
            raise UsageError("invalid sampling settings: " + "; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive / multiply negative logits of already-seen tokens by `penalty`. seen: bool (B, V)."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value kept), -inf elsewhere."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of top tokens whose probability reaches p (always >= 1 token)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = cum - sorted_logits.softmax(-1) >= p  # mass before this token already reaches p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    params: SamplingParams,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token id per row (B,) from (B, V) logits."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(-1)
    logits = logits / params.temperature
    logits = filter_top_p(filter_top_k(logits, params.top_k), params.top_p)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
