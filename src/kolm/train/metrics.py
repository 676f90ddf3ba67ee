"""Training measurements: bits per character, MFU, peak memory.

Bits per character divides the summed loss (nats) by ln 2 and by the number of
characters the scored tokens cover, so two tokenizers of different granularity
score on the same scale (a tokenizer with longer tokens has a higher loss per
token, but fewer tokens per character).

FLOPs per token depend on the architecture and come from the model layer
(`kolm.models.registry.flops_per_token`); `mfu` takes the number.
"""

from __future__ import annotations

import math
import resource
import sys

__all__ = ["bits_per_char", "peak_flops", "mfu", "peak_memory_mb", "count_params"]

# Dense bf16 peak (FLOP/s, no sparsity) of common accelerators, matched against the device name.
_PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "A10G": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,  # fp16 tensor cores
    "T4": 65e12,
}


def bits_per_char(mean_loss_nats: float, n_tokens: int, n_chars: int) -> float:
    """Bits per character from a mean per-token loss over `n_tokens` tokens covering `n_chars` characters."""
    if n_chars <= 0:
        return float("nan")
    return mean_loss_nats * n_tokens / (n_chars * math.log(2))


def count_params(model, exclude_embeddings: bool = True) -> int:
    """Parameters (counted once when tied); embeddings excluded by default, as in the 6N FLOPs rule."""
    import torch.nn as nn

    emb = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (exclude_embeddings and id(p) in emb):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def peak_flops(device: str) -> float | None:
    """Known bf16 peak of the device, or None (CPUs and unknown GPUs: no MFU is reported)."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name(0)
    for key, value in _PEAK_BF16.items():
        if key in name:
            return value
    return None


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float | None, world_size: int = 1) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak of all devices."""
    if not peak:
        return None
    return tokens_per_s * flops_per_tok / (peak * world_size)


def peak_memory_mb(device: str) -> float:
    """Peak memory: CUDA allocator peak on GPU, process peak RSS on CPU."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
