"""Settings of the pretraining stage (`kolm pretrain`)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.sections import Section, option

__all__ = ["PretrainConfig"]


@dataclass
class PretrainConfig(Section):
    """The pretraining loop."""

    max_steps: int = option(200, help="optimizer steps", ge=1)
    seq_len: int = option(128, help="tokens per training sequence", ge=8)
    batch_size: int = option(16, help="sequences per micro-batch", ge=1)
    lr: float = option(3e-3, help="peak learning rate", gt=0)
