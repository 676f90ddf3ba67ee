"""Settings of the tokenizer stage (`kolm tokenizer train|compare`)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.sections import Section, option

__all__ = ["TokenizerConfig"]


@dataclass
class TokenizerConfig(Section):
    """Which tokenizer to train for the model, and which to compare it with."""

    kind: str = option(
        "bytelevel_bpe",
        help="tokenizer type (토크나이저 종류)",
        choices=["bytelevel_bpe", "unigram", "sp_bpe", "wordpiece", "morpheme_bpe"],
    )
    vocab_size: int = option(4000, help="vocabulary size", ge=300)
    min_frequency: int = option(2, help="minimum pair/piece frequency", ge=1)
    compare: list[str] = option([], help="other tokenizer kinds to train and compare against")
