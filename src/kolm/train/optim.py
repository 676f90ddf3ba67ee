"""AdamW with decay / no-decay parameter groups.

Weight decay pulls weights toward zero; that helps matrices (a prior toward
small, spread-out weights) but hurts gains and biases (it would shrink RMSNorm
scales toward zero) and embeddings (rare tokens would decay to nothing between
their updates). So decay applies only to parameters with 2+ dimensions that
are not embeddings. Fused AdamW (one kernel for all parameters) is used when
the parameters' device supports it, which includes CPU since torch 2.4.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["param_groups", "build_adamw", "fused_available"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: matrices (decayed) and norms / biases / embeddings (not decayed); frozen params skipped."""
    embedding_params = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)
    }
    decay, no_decay, seen = [], [], set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in embedding_params else no_decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def fused_available(device: torch.device | str) -> bool:
    """Whether torch has a fused AdamW kernel for this device type."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return torch.device(device).type in _get_fused_kernels_supported_devices()
    except ImportError:  # older torch: fused only on CUDA
        return torch.device(device).type == "cuda"


def build_adamw(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, weight_decay)`; fused when the device supports it (or as asked)."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    device = groups[0]["params"][0].device
    if fused is None:
        # DTensor parameters (FSDP2) work with the foreach path everywhere; keep fused for plain tensors.
        is_dtensor = type(groups[0]["params"][0]).__name__ == "DTensor"
        fused = fused_available(device) and not is_dtensor
    kwargs: dict[str, Any] = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)
