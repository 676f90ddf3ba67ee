"""The whole chain in one call: run the configured stages in table order, then the report.

Stages whose manifest still matches their config and inputs are skipped, so a
pipeline stopped by an error or Ctrl-C continues where it stopped. The first
failure stops the run with a message naming the stage; earlier stages stay
done and reusable.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from kolm.errors import KolmError
from kolm.progress import Progress
from kolm.run import StageResult, run_stage
from kolm.stages import STAGES

if TYPE_CHECKING:
    from kolm.config import RunConfig

__all__ = ["run_pipeline", "PipelineError"]


class PipelineError(KolmError):
    """A stage failed; the message names it and what to do."""


def run_pipeline(
    cfg: RunConfig,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, StageResult | None]:
    """Run `cfg.pipeline.stages` in the order of the stage table; return each stage's result.

    A skipped (up-to-date) stage maps to None. Writes the report at the end when
    `cfg.pipeline.report` is set.
    """
    progress = progress or Progress(enabled=False)
    selected = [s for s in STAGES if s.name in cfg.pipeline.stages]
    results: dict[str, StageResult | None] = {}
    overall = progress.task("pipeline", total=len(selected))
    for stage in selected:
        overall.update(info=f"stage: {stage.name}")
        t0 = time.perf_counter()
        try:
            results[stage.name] = run_stage(cfg, stage.name, force=force, progress=progress)
        except KolmError as exc:
            raise PipelineError(f"stage '{stage.name}' failed: {exc}") from exc
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise PipelineError(
                f"stage '{stage.name}' failed with {type(exc).__name__}: {exc}. "
                f"Finished stages are kept; fix the cause and re-run (--debug shows the traceback)"
            ) from exc
        took = time.perf_counter() - t0
        state = "skipped (up to date)" if results[stage.name] is None else f"done in {took:.1f}s"
        progress.log(f"[green]✓[/green] {stage.name}: {state}")
        overall.advance()
    overall.close()
    if cfg.pipeline.report:
        from kolm.report import write_report

        paths = write_report(Path(cfg.run_path))
        progress.log(f"report: {paths['html']}")
    return results
