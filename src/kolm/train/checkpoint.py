"""Training checkpoints: atomic, self-describing, keep-last-K plus the best, `resume auto`.

A checkpoint is a folder `checkpoints/step-N/` holding

    model.pt      model state dict (full, unsharded, CPU tensors)
    optim.pt      optimizer and scheduler state dicts
    rng.pt        python / numpy / torch (and CUDA) RNG states
    trainer.json  step, data position, best metric, config and anything the caller adds

It is written into a hidden temp folder and renamed into place, so a crash
never leaves a half-written `step-N/`; `trainer.json` is written last, and a
folder without it is ignored. Under DDP/FSDP2 the full state dicts are
gathered with `torch.distributed.checkpoint.state_dict` and only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kolm.errors import CheckpointError

__all__ = ["Checkpointer", "capture_rng", "restore_rng", "model_state", "load_model_state"]

_STEP_DIR = re.compile(r"^step-(\d+)$")


def capture_rng() -> dict[str, Any]:
    """Every RNG state a training step can touch."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back RNG states saved by `capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _dist() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / torch.compile wrappers (state dict keys must not carry their prefixes)."""
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and isinstance(getattr(model, attr), nn.Module):
            model = getattr(model, attr)
    return model


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) model state dict on CPU; collective under torch.distributed (call on every rank)."""
    if _dist():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(
            unwrap_model(model), options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full model state dict (into a sharded model too)."""
    if _dist():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(unwrap_model(model), state, options=StateDictOptions(full_state_dict=True))
    else:
        unwrap_model(model).load_state_dict(state)


def _optim_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    if _dist():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(
            unwrap_model(model), optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return optimizer.state_dict()


def _load_optim_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    if _dist():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(unwrap_model(model), optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)


class Checkpointer:
    """Saves and finds checkpoints under `root` (e.g. `runs/x/pretrain/checkpoints`)."""

    def __init__(self, root: str | Path, keep_last: int = 2, is_main: bool = True) -> None:
        self.root = Path(root)
        self.keep_last = max(1, keep_last)
        self.is_main = is_main

    # -- finding ---------------------------------------------------------------
    def steps(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (those with trainer.json), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            m = _STEP_DIR.match(p.name)
            if m and p.is_dir() and (p / "trainer.json").is_file():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        steps = self.steps()
        return steps[-1][1] if steps else None

    def best(self) -> Path | None:
        """The checkpoint with the best evaluation metric so far, or None."""
        try:
            info = json.loads((self.root / "best.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        path = self.root / f"step-{info['step']}"
        return path if (path / "trainer.json").is_file() else None

    def resolve(self, resume: str | None) -> Path | None:
        """Map a `resume` setting to a checkpoint folder: "auto" -> latest or None, "never" -> None, else a path."""
        if resume in (None, "", "never"):
            return None
        if resume == "auto":
            return self.latest()
        path = Path(resume)
        if path.is_dir() and _STEP_DIR.match(path.name) is None and (path / "checkpoints").is_dir():
            path = Checkpointer(path / "checkpoints").latest() or path  # a stage folder was given
        if not (path / "trainer.json").is_file():
            raise CheckpointError(
                f"no checkpoint at {path} (expected a folder with trainer.json, e.g. "
                f"{self.root}/step-100); use pretrain.resume=auto or never"
            )
        return path

    # -- writing ---------------------------------------------------------------
    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        trainer: dict[str, Any] | None = None,
        metric: float | None = None,
        lower_is_better: bool = True,
    ) -> Path:
        """Write `step-N/` atomically (collective under torch.distributed: call on every rank)."""
        model_sd = model_state(model)
        optim_sd = _optim_state(model, optimizer) if optimizer is not None else None
        final = self.root / f"step-{step}"
        if self.is_main:
            tmp = self.root / f".tmp-step-{step}"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            torch.save(model_sd, tmp / "model.pt")
            torch.save(
                {"optimizer": optim_sd, "scheduler": scheduler.state_dict() if scheduler is not None else None},
                tmp / "optim.pt",
            )
            torch.save(capture_rng(), tmp / "rng.pt")
            info = dict(trainer or {})
            info["step"] = step
            (tmp / "trainer.json").write_text(json.dumps(info, ensure_ascii=False, indent=2, default=str), "utf-8")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            if metric is not None:
                self._update_best(step, metric, lower_is_better)
            self._prune()
        if _dist():
            torch.distributed.barrier()
        return final

    def _update_best(self, step: int, metric: float, lower_is_better: bool) -> None:
        path = self.root / "best.json"
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        better = old is None or (metric < old["metric"] if lower_is_better else metric > old["metric"])
        if better or (old and not (self.root / f"step-{old['step']}").is_dir()):
            tmp = path.with_name("best.json.tmp")
            tmp.write_text(json.dumps({"step": step, "metric": metric}), encoding="utf-8")
            os.replace(tmp, path)

    def _prune(self) -> None:
        """Keep the newest `keep_last` checkpoints and the best one."""
        best = self.best()
        for _, path in self.steps()[: -self.keep_last]:
            if best is None or path.resolve() != best.resolve():
                shutil.rmtree(path, ignore_errors=True)

    # -- reading ---------------------------------------------------------------
    def load(
        self,
        path: str | Path,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        restore_rng_state: bool = True,
    ) -> dict[str, Any]:
        """Load a checkpoint into the given objects; returns its trainer.json. Raises CheckpointError."""
        path = Path(path)
        hint = "delete that folder to fall back to an older one, or set pretrain.resume=never to start over"
        try:
            info = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
            model_sd = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
            optim = torch.load(path / "optim.pt", map_location="cpu", weights_only=False)
            rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=False)
        except FileNotFoundError as exc:
            raise CheckpointError(
                f"checkpoint {path} is incomplete (missing {Path(exc.filename).name}); {hint}"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - any unpickling/JSON error means a corrupt file
            raise CheckpointError(f"checkpoint {path} is corrupt ({type(exc).__name__}: {exc}); {hint}") from exc
        try:
            load_model_state(model, model_sd)
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:300]
            raise CheckpointError(
                f"checkpoint {path} does not match the model (was model: changed?): {first}; "
                "restore the old model settings or set pretrain.resume=never"
            ) from exc
        if optimizer is not None and optim.get("optimizer") is not None:
            _load_optim_state(model, optimizer, optim["optimizer"])
        if scheduler is not None and optim.get("scheduler") is not None:
            scheduler.load_state_dict(optim["scheduler"])
        if restore_rng_state:
            restore_rng(rng)
        return info
