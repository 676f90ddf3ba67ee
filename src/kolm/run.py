"""Run directory, stage manifests, up-to-date checks, seeding and device selection.

A run directory (`runs/<name>/`) is the contract between stages: each stage
reads what earlier stages wrote there and writes its own folder plus a
`manifest.json` recording its inputs (paths and content hashes), the hash of
the config sections it depends on, its outputs, metrics, wall time, library
versions and the git commit. A stage whose manifest still matches is skipped.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kolm.config import config_hash, save_config, to_dict
from kolm.errors import KolmError
from kolm.progress import Progress, ProgressTask
from kolm.stages import Stage, get_stage

__all__ = [
    "StageContext",
    "StageResult",
    "run_stage",
    "is_up_to_date",
    "read_manifest",
    "hash_path",
    "manifest_name",
    "seed_everything",
    "resolve_device",
    "library_versions",
    "write_json",
    "append_jsonl",
]

MANIFEST = "manifest.json"


@dataclass
class StageResult:
    """What a stage returns: its outputs (paths relative to the run dir) and headline metrics."""

    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """Everything a stage needs, passed explicitly."""

    cfg: Any  # RunConfig
    stage: Stage
    run_dir: Path
    out: Path  # this stage's folder, created before the stage runs
    progress: Progress
    force: bool = False
    _inputs: dict[str, str] = field(default_factory=dict)

    def input(self, path: str | Path) -> Path:
        """Record a file or folder this stage reads; its content hash goes into the manifest."""
        path = Path(path)
        if not path.exists():
            raise KolmError(f"input not found: {path}")
        self._inputs[str(path)] = hash_path(path)
        return path

    def stage_dir(self, name: str) -> Path:
        """Folder of another stage in this run (to read upstream outputs)."""
        return self.run_dir / get_stage(name).dir

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        """A progress bar for long work (rate and ETA)."""
        return self.progress.task(description, total=total)

    def log(self, message: str) -> None:
        """One line on the console."""
        self.progress.log(message)


# ----------------------------------------------------------------------------
# Hashing and manifests


def hash_path(path: Path) -> str:
    """Content hash of a file, or of every file below a folder (names included)."""
    h = hashlib.blake2b(digest_size=16)
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode("utf-8"))
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (temp file + rename), UTF-8, Hangul unescaped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (metrics logs); flushed so a crash loses nothing written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        fh.flush()


def read_manifest(stage_dir: Path, action: str | None = None) -> dict[str, Any] | None:
    """The manifest of a stage folder (or of one action), or None when absent or unreadable."""
    try:
        return json.loads((Path(stage_dir) / manifest_name(action)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def manifest_name(action: str | None) -> str:
    """Manifest file of a stage (`manifest.json`) or of one of its actions (`manifest-<action>.json`)."""
    return MANIFEST if action is None else f"manifest-{action}.json"


def _stage_config_hash(cfg: Any, stage: Stage, action: str | None) -> str:
    return config_hash(cfg.seed, action, *[getattr(cfg, s) for s in stage.sections])


def is_up_to_date(cfg: Any, stage: Stage, action: str | None = None) -> tuple[bool, str]:
    """Whether a stage's last run still matches its config, inputs and outputs; and why not."""
    stage_dir = cfg.run_path / stage.dir
    manifest = read_manifest(stage_dir, action)
    if manifest is None or manifest.get("status") != "done":
        return False, "no completed run"
    if manifest.get("config_hash") != _stage_config_hash(cfg, stage, action):
        return False, "config changed"
    for path, digest in manifest.get("inputs", {}).items():
        if not Path(path).exists() or hash_path(Path(path)) != digest:
            return False, f"input changed: {path}"
    for rel in manifest.get("outputs", {}).values():
        if not (cfg.run_path / rel).exists():
            return False, f"output missing: {rel}"
    return True, "up to date"


# ----------------------------------------------------------------------------
# Environment


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape results (only those installed)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("kolm", "torch", "transformers", "tokenizers", "datasets", "peft", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(cwd: Path | None = None) -> str | None:
    """The current git commit of the working directory, if any."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def seed_everything(seed: int) -> None:
    """Seed python, numpy and (if loaded or importable) torch."""
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
    return name


# ----------------------------------------------------------------------------
# Running a stage


def _resolve(entry: str) -> Callable[[StageContext], StageResult]:
    module_name, func_name = entry.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("kolm"):
            raise KolmError(f"stage entry {entry} is not available in this version of kolm") from exc
        raise KolmError(
            f"a package needed by {module_name} is missing: {exc.name} (pip install it, or run `kolm doctor`)"
        ) from exc
    return getattr(module, func_name)


def run_stage(
    cfg: Any,
    name: str,
    *,
    action: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> StageResult | None:
    """Run one stage (or one of its actions) unless it is up to date; return its result.

    Returns None when the stage was skipped because nothing changed.
    """
    stage = get_stage(name)
    if action is not None and action not in stage.actions:
        valid = ", ".join(stage.actions) or "none"
        raise KolmError(f"'{name}' has no action {action!r}; valid actions: {valid}")
    if action is not None and stage.actions[action] == stage.entry:
        action = None  # the default action is the stage itself
    progress = progress or Progress(enabled=False)
    run_dir = cfg.run_path
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    if not force:
        fresh, _why = is_up_to_date(cfg, stage, action)
        if fresh:
            progress.log(f"[dim]{stage.name}: up to date, skipped (use --force to re-run)[/dim]")
            return None
    entry = stage.actions.get(action, stage.entry) if action else stage.entry
    func = _resolve(entry)
    out = run_dir / stage.dir
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    ctx = StageContext(cfg=cfg, stage=stage, run_dir=run_dir, out=out, progress=progress, force=force)
    manifest: dict[str, Any] = {
        "stage": stage.name,
        "action": action,
        "status": "running",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": _stage_config_hash(cfg, stage, action),
        "config": {s: to_dict(getattr(cfg, s)) for s in stage.sections},
        "versions": library_versions(),
        "git_commit": git_commit(),
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(), "argv": sys.argv},
    }
    write_json(out / manifest_name(action), manifest)
    t0 = time.perf_counter()
    try:
        result = func(ctx)
    except BaseException as exc:
        manifest.update(status="failed", error=f"{type(exc).__name__}: {exc}", wall_time_s=time.perf_counter() - t0)
        manifest["inputs"] = ctx._inputs
        write_json(out / manifest_name(action), manifest)
        raise
    result = result or StageResult()
    manifest.update(
        status="done",
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_time_s=round(time.perf_counter() - t0, 3),
        inputs=ctx._inputs,
        outputs=result.outputs,
        metrics=result.metrics,
    )
    write_json(out / manifest_name(action), manifest)
    return result
