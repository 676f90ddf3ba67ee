"""Settings of the evaluation stage (`kolm eval`)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.sections import Section, option

__all__ = ["EvalConfig"]


@dataclass
class EvalConfig(Section):
    """What `kolm eval` measures."""

    max_new_tokens: int = option(64, help="tokens generated per prompt", ge=1)
