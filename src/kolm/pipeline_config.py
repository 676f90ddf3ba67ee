"""Settings of the pipeline itself: which stages run."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["PipelineConfig"]


@dataclass
class PipelineConfig(Section):
    """Which stages `kolm pipeline` runs, in the order of the stage table."""

    stages: list[str] = option(
        ["data", "tokenizer", "pretrain", "finetune", "eval"],
        help="stages to run, by name; they always run in the stage table's order",
    )
    report: bool = option(True, help="write report/report.md and report.html at the end")

    def validate(self) -> None:
        from kolm.stages import STAGES

        known = [s.name for s in STAGES]
        bad = [s for s in self.stages if s not in known]
        if bad:
            raise ConfigError(f"pipeline.stages: unknown stage(s) {bad}; valid stages: {', '.join(known)}")
