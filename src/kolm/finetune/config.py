"""Settings of the fine-tuning stage (`kolm finetune`)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.sections import Section, option

__all__ = ["FinetuneConfig"]


@dataclass
class FinetuneConfig(Section):
    """Fine-tuning tasks and PEFT method."""

    method: str = option(
        "lora",
        help="full, lora, dora, waveft, ia3, prompt_tuning, qlora",
        choices=["full", "lora", "dora", "waveft", "ia3", "prompt_tuning", "qlora"],
    )
