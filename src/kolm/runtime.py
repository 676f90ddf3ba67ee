"""Seeding and device selection: the two pieces of process state every stage sets explicitly."""

from __future__ import annotations

import os
import random

from kolm.errors import KolmError

__all__ = ["seed_everything", "resolve_device"]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and (if importable) torch."""
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def resolve_device(name: str = "auto") -> str:
    """`auto` picks cuda, then mps, then cpu; other names are checked for availability."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KolmError(f"device {name!r} was asked for but CUDA is not available; use device=cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise KolmError("device 'mps' was asked for but MPS is not available; use device=cpu or auto")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise KolmError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return name
