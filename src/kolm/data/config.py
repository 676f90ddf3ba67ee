"""Settings of the data curation stage (`kolm data`)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.sections import Section, option

__all__ = ["DataConfig", "SourceConfig"]


@dataclass
class SourceConfig(Section):
    """One input source of the curation stage."""

    kind: str = option(
        "embedded",
        help="embedded (the corpus shipped with kolm), file, recipe (nsmc, klue-ynat, ...), hub",
        choices=["embedded", "file", "recipe", "hub"],
    )
    path: str | None = option(None, help="file, folder or glob for kind=file/recipe; dataset name for kind=hub")
    text_field: str = option("text", help="field or column holding the text")
    weight: float = option(1.0, help="sampling weight when mixing sources", gt=0)


@dataclass
class DataConfig(Section):
    """Curation: read sources, normalize, filter, redact PII, deduplicate, split."""

    sources: list[SourceConfig] = option(default_factory=lambda: [SourceConfig()], help="input sources")
    val_fraction: float = option(0.05, help="share of documents held out for validation", ge=0.0, lt=1.0)
    min_chars: int = option(20, help="drop documents shorter than this many characters", ge=0)
    num_proc: int = option(0, help="worker processes (0 = all cores)", ge=0)
