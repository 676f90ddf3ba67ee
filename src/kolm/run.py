"""Run directory, stage manifests, up-to-date checks, seeding and device selection.

A run directory (`runs/<name>/`) is the contract between stages: each stage
reads what earlier stages wrote there and writes its own folder plus a
`manifest.json` recording its inputs (paths and content hashes), the hash of
the config sections it depends on, its outputs, metrics, wall time, library
versions and the git commit. A stage whose manifest still matches is skipped.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kolm.config import config_hash, save_config, to_dict
from kolm.context import StageContext, StageResult
from kolm.errors import KolmError
from kolm.files import hash_path, write_json
from kolm.progress import Progress
from kolm.runtime import resolve_device, seed_everything
from kolm.stages import Stage, get_stage

if TYPE_CHECKING:
    from kolm.config import RunConfig

__all__ = [
    "StageContext",
    "StageResult",
    "run_stage",
    "is_up_to_date",
    "read_manifest",
    "manifest_name",
    "staging_dir",
    "library_versions",
]

MANIFEST = "manifest.json"


# ----------------------------------------------------------------------------
# Hashing and manifests


def read_manifest(stage_dir: Path, action: str | None = None) -> dict[str, Any] | None:
    """The manifest of a stage folder (or of one action), or None when absent or unreadable."""
    try:
        return json.loads((Path(stage_dir) / manifest_name(action)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def manifest_name(action: str | None) -> str:
    """Manifest file of a stage (`manifest.json`) or of one of its actions (`manifest-<action>.json`)."""
    return MANIFEST if action is None else f"manifest-{action}.json"


def _stage_config_hash(cfg: RunConfig, stage: Stage, action: str | None) -> str:
    return config_hash(cfg.seed, action, *[getattr(cfg, s) for s in stage.sections])


def is_up_to_date(cfg: RunConfig, stage: Stage, action: str | None = None) -> tuple[bool, str]:
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
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


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


# ----------------------------------------------------------------------------
# Staging: a stage writes beside its folder and is swapped in only on success


def staging_dir(run_dir: Path, stage: Stage) -> Path:
    """Where a stage writes while it runs: `<run>/<stage>.staging/`, at the same depth as its final folder.

    The same depth keeps relative paths recorded inside the outputs (an
    adapter's base model, for instance) valid after the swap.
    """
    return Path(run_dir) / f"{stage.dir}.staging"


def _previous_dir(final: Path) -> Path:
    return final.with_name(final.name + ".previous")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def _recover_swap(final: Path) -> None:
    """Undo a crash between the two renames of a swap: the previous outputs go back in place."""
    previous = _previous_dir(final)
    if not final.exists() and previous.exists():
        os.replace(previous, final)


def _prepare_staging(stage: Stage, final: Path, staging: Path) -> None:
    """Create the staging folder: the previous outputs (so actions and resumes keep them), or what a
    resumable stage left when it was interrupted.

    Folders a stage writes only as new files (`Stage.linked`: packed tokens,
    checkpoints) are hard-linked instead of copied, so large artifacts cost
    nothing to carry over; every other file is copied, so writing it in place
    cannot touch the previous outputs.
    """
    if staging.exists():
        if stage.resumable:
            return  # checkpoints of the interrupted attempt live here; the stage resumes from them
        shutil.rmtree(staging)
    if not final.exists():
        staging.mkdir(parents=True)
        return
    staging.mkdir(parents=True)
    for item in final.iterdir():
        target = staging / item.name
        if item.is_dir():
            copy = _link_or_copy if item.name in stage.linked else shutil.copy2
            shutil.copytree(item, target, copy_function=copy, symlinks=True)
        else:
            shutil.copy2(item, target)


def _swap_in(staging: Path, final: Path) -> None:
    """Put the staged outputs in place of the previous ones (two renames; recovered by _prepare_staging)."""
    previous = _previous_dir(final)
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        os.replace(final, previous)
    os.replace(staging, final)
    shutil.rmtree(previous, ignore_errors=True)


def run_stage(
    cfg: RunConfig,
    name: str,
    *,
    action: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> StageResult | None:
    """Run one stage (or one of its actions) unless it is up to date; return its result.

    Returns None when the stage was skipped because nothing changed. The stage
    writes into a staging folder that replaces its folder only when it
    succeeds: a failed or interrupted stage leaves the previous outputs,
    manifest and `config.yaml` untouched (its own failure record stays in
    `<stage>.staging/manifest.json`).
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
    final = run_dir / stage.dir
    _recover_swap(final)
    if not force:
        fresh, _why = is_up_to_date(cfg, stage, action)
        if fresh:
            save_config(cfg, run_dir / "config.yaml")
            progress.log(f"[dim]{stage.name}: up to date, skipped (use --force to re-run)[/dim]")
            return None
    entry = stage.actions.get(action, stage.entry) if action else stage.entry
    func = _resolve(entry)
    device = resolve_device(cfg.device)
    out = staging_dir(run_dir, stage)
    _prepare_staging(stage, final, out)
    seed_everything(cfg.seed)
    ctx = StageContext(cfg=cfg, stage=stage, run_dir=run_dir, out=out, progress=progress, device=device, force=force)
    manifest: dict[str, Any] = {
        "stage": stage.name,
        "action": action,
        "status": "running",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": _stage_config_hash(cfg, stage, action),
        "config": {s: to_dict(getattr(cfg, s)) for s in stage.sections},
        "device": device,
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
    _swap_in(out, final)
    save_config(cfg, run_dir / "config.yaml")
    return result
