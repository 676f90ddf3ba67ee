"""Learning-rate schedules as multipliers of the peak rate, for `torch.optim.lr_scheduler.LambdaLR`.

Both start with a linear warmup. `cosine` then decays along a half cosine to
`min_ratio`; `wsd` (warmup-stable-decay) holds the peak and decays linearly in
the last `decay_fraction` of the steps, which lets a run be extended from any
stable-phase checkpoint. Pure functions of the step, so a resumed scheduler
needs only its step count.
"""

from __future__ import annotations

import math
from typing import Callable

__all__ = ["warmup_cosine", "warmup_stable_decay", "lr_lambda", "build_scheduler"]


def warmup_cosine(warmup: int, total: int, min_ratio: float = 0.1) -> Callable[[int], float]:
    """Multiplier: linear 0->1 over `warmup` steps, then cosine 1->`min_ratio` until `total`."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        span = max(1, total - warmup)
        progress = min(1.0, (step - warmup) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def warmup_stable_decay(
    warmup: int, total: int, min_ratio: float = 0.1, decay_fraction: float = 0.2
) -> Callable[[int], float]:
    """Multiplier: linear warmup, flat at 1, then linear 1->`min_ratio` over the last `decay_fraction`."""
    decay_steps = max(1, int(round(total * decay_fraction)))
    decay_start = max(warmup, total - decay_steps)

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, total - decay_start))
        return 1.0 - (1.0 - min_ratio) * progress

    return f


def lr_lambda(kind: str, warmup: int, total: int, min_ratio: float = 0.1, decay_fraction: float = 0.2):
    """The multiplier function for a schedule name ("cosine" or "wsd")."""
    if kind == "cosine":
        return warmup_cosine(warmup, total, min_ratio)
    if kind == "wsd":
        return warmup_stable_decay(warmup, total, min_ratio, decay_fraction)
    raise ValueError(f"unknown schedule {kind!r}; use cosine or wsd")


def build_scheduler(optimizer, kind: str, warmup: int, total: int, min_ratio: float = 0.1, decay_fraction: float = 0.2):
    """A `LambdaLR` over `optimizer` following the named schedule (step it once per optimizer step)."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lr_lambda(kind, warmup, total, min_ratio, decay_fraction))
