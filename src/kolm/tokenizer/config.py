"""Settings of the tokenizer stage (`kolm tokenizer train|compare`)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["TokenizerConfig", "KINDS"]

KINDS = ("bytelevel_bpe", "unigram", "sp_bpe", "wordpiece", "morpheme_bpe")


@dataclass
class TokenizerConfig(Section):
    """Which tokenizer to train for the model, and which to compare it with."""

    kind: str = option(
        "bytelevel_bpe",
        help="tokenizer type (토크나이저 종류): bytelevel_bpe (GPT-2 style, no UNK), unigram / sp_bpe "
        "(SentencePiece-style, Metaspace + byte fallback), wordpiece (BERT style), morpheme_bpe "
        "(byte-level BPE whose merges never cross a Kiwi morpheme boundary)",
        choices=list(KINDS),
    )
    vocab_size: int = option(4000, help="vocabulary size (including special and byte-fallback tokens)", ge=300)
    min_frequency: int = option(2, help="minimum pair/piece frequency", ge=1)
    normalization: str = option("NFC", help="normalizer inside the tokenizer", choices=["NFC", "NFKC", "none"])
    split_digits: bool = option(True, help="split numbers into single digits (helps arithmetic, stabilizes fertility)")
    max_train_docs: int = option(0, help="train on at most this many documents of data/train (0 = all)", ge=0)
    compare: list[str] = option([], help="other tokenizer kinds to train and compare against")
    compare_dirs: list[str] = option(
        [], help="extra tokenizer directories (ours or downloaded) to include in the comparison"
    )
    compare_docs: int = option(2000, help="held-out documents (data/validation) used by the comparison", ge=1)
    compare_file: str | None = option(
        None, help="held-out text file (.txt/.jsonl) to compare on instead of data/validation"
    )
    kiwi_docs: int = option(300, help="documents analysed with Kiwi for the morpheme-boundary agreement metric", ge=0)
    sentences: list[str] = option(
        ["한국어 자연어 처리는 매우 흥미로운 분야입니다."],
        help="sentences whose segmentations are shown side by side in compare.md",
    )

    def validate(self) -> None:
        bad = [k for k in self.compare if k not in KINDS]
        if bad:
            raise ConfigError(f"tokenizer.compare: unknown kinds {bad}; choose from {list(KINDS)}")
