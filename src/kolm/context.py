"""What a stage receives and returns: `StageContext` in, `StageResult` out.

`kolm.run.run_stage` builds the context (config, resolved device, the stage's
staging folder, progress display) and calls the stage's `run(ctx)`. Stage
modules import this module, never `kolm.run`, so dependencies point one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kolm.errors import KolmError
from kolm.files import hash_path
from kolm.progress import Progress, ProgressTask
from kolm.stages import Stage, get_stage

if TYPE_CHECKING:
    from kolm.config import RunConfig

__all__ = ["StageContext", "StageResult"]


@dataclass
class StageResult:
    """What a stage returns: its outputs (paths relative to the run dir) and headline metrics."""

    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """Everything a stage needs, passed explicitly.

    `out` is the folder the stage writes: a staging folder beside the stage's
    final folder (`<run>/<stage>.staging/`), swapped into place only when the
    stage succeeds, so a failed run never leaves half-written outputs.
    Paths in `StageResult.outputs` name the final place (`pretrain/final`).
    """

    cfg: RunConfig
    stage: Stage
    run_dir: Path
    out: Path
    progress: Progress
    device: str = "cpu"  # resolved once by run_stage ("auto" never reaches a stage)
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
        """Final folder of a stage in this run (to read upstream outputs)."""
        return self.run_dir / get_stage(name).dir

    def output(self, path: str | Path) -> str:
        """Run-relative name of a path inside `out`, as it will read once the outputs are in place."""
        rel = Path(path).relative_to(self.out)
        return str(Path(self.stage.dir) / rel) if str(rel) != "." else self.stage.dir

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        """A progress bar for long work (rate and ETA)."""
        return self.progress.task(description, total=total)

    def log(self, message: str) -> None:
        """One line on the console."""
        self.progress.log(message)
