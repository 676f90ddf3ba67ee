"""Settings of the data curation stage (`kolm data`).

Nested sections mirror the order of the curation steps: sources -> normalize
-> filters -> pii -> dedup -> split/output. Override any field on the command
line, e.g. `kolm data data.filters.min_chars=10 data.dedup.threshold=0.7`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["DataConfig", "SourceConfig", "NormalizeConfig", "FilterConfig", "PiiConfig", "DedupConfig", "RECIPES"]

# Named recipes for public Korean sets, read in their official formats (see kolm.data.sources).
RECIPES = ("nsmc", "klue-nli", "klue-sts", "klue-ynat", "kowiki")


@dataclass
class SourceConfig(Section):
    """One input source of the curation stage."""

    kind: str = option(
        "embedded",
        help="embedded (the corpus shipped with kolm), file, recipe (nsmc, klue-ynat, ...), hub",
        choices=["embedded", "file", "recipe", "hub"],
    )
    path: str | None = option(None, help="file, folder or glob for kind=file/recipe; dataset name for kind=hub")
    text_field: str = option("text", help="field or column holding the text (jsonl/csv/tsv/parquet/hub)")
    weight: float = option(1.0, help="sampling weight when mixing sources (documents kept ~ weight share)", gt=0)
    recipe: str | None = option(None, help="recipe name for kind=recipe", choices=[None, *RECIPES])
    config: str | None = option(None, help="hub dataset config name (kind=hub)")
    split: str = option("train", help="hub dataset split (kind=hub)")
    data_files: str | None = option(
        None, help="kind=hub: data_files for builder names such as json/parquet/csv (local or remote)"
    )
    streaming: bool = option(True, help="stream the hub dataset instead of downloading it whole")
    max_docs: int = option(0, help="read at most this many documents from the source (0 = all)", ge=0)
    txt_mode: str = option(
        "line", help=".txt files: one document per line or per blank-line block", choices=["line", "block"]
    )

    def validate(self) -> None:
        if self.kind in ("file", "hub") and not self.path:
            raise ConfigError(
                f"data.sources.path: kind={self.kind} needs a path (file/folder/glob or hub dataset name)"
            )
        if self.kind == "recipe" and not self.recipe:
            raise ConfigError(f"data.sources.recipe: kind=recipe needs one of {list(RECIPES)}")


@dataclass
class NormalizeConfig(Section):
    """Korean-aware text normalization (applied before filters)."""

    form: str = option(
        "NFC", help="Unicode normal form (NFKC also folds full-width/compat characters)", choices=["NFC", "NFKC"]
    )
    strip_html: bool = option(True, help="remove HTML tags and unescape entities (&amp; -> &)")
    remove_control: bool = option(True, help="remove control and zero-width characters (keeps newlines and tabs)")
    squash_repeats: int = option(
        3, help="cap runs of one repeated character/jamo (ㅋㅋㅋㅋㅋ -> ㅋㅋㅋ); 0 = off", ge=0
    )
    urls: str = option(
        "keep", help="URLs: keep, replace with <url>, or remove", choices=["keep", "placeholder", "remove"]
    )
    whitespace: bool = option(True, help="collapse runs of spaces, trim lines, at most one blank line")


@dataclass
class FilterConfig(Section):
    """Document filters; each reports how many documents it removed and why."""

    min_chars: int = option(20, help="drop documents shorter than this many characters", ge=0)
    max_chars: int = option(100_000, help="drop documents longer than this many characters (0 = no limit)", ge=0)
    min_eojeol: int = option(1, help="drop documents with fewer whitespace-separated words (어절)", ge=0)
    min_hangul_ratio: float = option(0.3, help="least share of Hangul among letters (language check)", ge=0, le=1)
    max_symbol_ratio: float = option(
        0.3, help="most share of symbols (★ ♥ ^ emoji # * ...; not . , ! ? ~) among non-space characters", ge=0, le=1
    )
    max_digit_ratio: float = option(0.5, help="most share of digits among non-space characters", ge=0, le=1)
    max_url_ratio: float = option(0.3, help="most share of characters inside URLs", ge=0, le=1)
    max_dup_line_frac: float = option(0.3, help="Gopher: most share of duplicated lines", ge=0, le=1)
    max_dup_para_frac: float = option(0.3, help="Gopher: most share of duplicated paragraphs", ge=0, le=1)
    max_top_ngram_frac: dict[str, float] = option(
        {"2": 0.20, "3": 0.18, "4": 0.16},
        help="Gopher: most share of characters covered by the most frequent word n-gram, per n",
    )
    bad_words: list[str] = option([], help="drop documents containing any of these words")
    bad_words_file: str | None = option(None, help="file with one bad word per line (added to bad_words)")
    boilerplate: list[str] = option(
        [
            "무단전재 및 재배포 금지",
            "무단 전재 및 재배포 금지",
            "무단전재-재배포 금지",
            "저작권자 ©",
            "Copyright ©",
            "구독하기",
            "좋아요 구독",
            "기사제보",
            "ⓒ 뉴스",
        ],
        help="boilerplate phrases; documents where they make up much of the text are dropped",
    )
    max_boilerplate_frac: float = option(
        0.5, help="drop when boilerplate lines cover more than this share of characters", ge=0, le=1
    )
    min_morphemes: int = option(
        0, help="drop documents with fewer Kiwi morphemes (0 = off; slow on large corpora)", ge=0
    )


@dataclass
class PiiConfig(Section):
    """PII redaction with typed placeholders (<email>, <phone>, <rrn>, <card>, <ip>)."""

    enabled: bool = option(True, help="redact PII")
    kinds: list[str] = option(["email", "phone", "rrn", "card", "ip"], help="which PII kinds to redact")


@dataclass
class DedupConfig(Section):
    """Exact and near-duplicate (MinHash + LSH) removal."""

    exact: bool = option(True, help="drop documents whose normalized text hash was seen before")
    near: bool = option(True, help="drop near-duplicates found by MinHash + LSH over character n-grams")
    ngram: int = option(5, help="character n-gram size of the shingles", ge=1)
    num_perm: int = option(128, help="MinHash permutations (signature length)", ge=8)
    bands: int = option(16, help="LSH bands (num_perm must be divisible by bands)", ge=1)
    threshold: float = option(
        0.7, help="estimated Jaccard a candidate pair must reach to count as duplicate", gt=0, le=1
    )
    examples: int = option(3, help="duplicate clusters shown in the report", ge=0)

    def validate(self) -> None:
        if self.num_perm % self.bands:
            raise ConfigError(f"data.dedup.bands: num_perm={self.num_perm} is not divisible by bands={self.bands}")


@dataclass
class DataConfig(Section):
    """Curation: read sources, normalize, filter, redact PII, deduplicate, split."""

    sources: list[SourceConfig] = option(default_factory=lambda: [SourceConfig()], help="input sources")
    normalize: NormalizeConfig = option(default_factory=NormalizeConfig, help="normalization")
    filters: FilterConfig = option(default_factory=FilterConfig, help="filters")
    pii: PiiConfig = option(default_factory=PiiConfig, help="PII redaction")
    dedup: DedupConfig = option(default_factory=DedupConfig, help="deduplication")
    val_fraction: float = option(0.05, help="share of documents held out for validation", ge=0.0, lt=1.0)
    engine: str = option(
        "local",
        help="local (worker processes on this machine) or ray (Ray Data, one machine or a cluster; same results)",
        choices=["local", "ray"],
    )
    ray_address: str | None = option(
        None, help="engine=ray: none starts a local Ray with num_proc CPUs; 'auto' joins the cluster of `ray start`"
    )
    ray_partitions: int = option(
        0,
        help="engine=ray: shuffle partitions of the dedup groupbys (0 = from the cluster's CPUs and the data size)",
        ge=0,
    )
    num_proc: int = option(0, help="worker processes, or CPUs of a local Ray (0 = all cores)", ge=0)
    chunk_docs: int = option(4000, help="documents per processing chunk (bounds memory)", ge=1)
    shard_docs: int = option(100_000, help="documents per output parquet shard", ge=1)
