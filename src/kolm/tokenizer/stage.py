"""The tokenizer stage: `kolm tokenizer train` (the model's tokenizer + candidates) and `kolm tokenizer compare`.

Layout of the stage folder:
  tokenizer/                 the model's tokenizer (cfg.tokenizer.kind): tokenizer.json, tokenizer_config.json, stats.json
  tokenizer/candidates/<k>/  other kinds from cfg.tokenizer.compare, same files
  tokenizer/compare/         compare.json, compare.md, compare.png
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kolm.context import StageContext, StageResult
from kolm.errors import DataError
from kolm.progress import Progress
from kolm.tokenizer.config import TokenizerConfig

__all__ = ["run", "run_compare", "train_tokenizers", "compare_tokenizers", "heldout_texts"]

Record = Callable[[Path], Any]  # notes a file the stage read (StageContext.input); a no-op outside a run


def _no_record(path: Path) -> Path:
    return Path(path)


def _train_texts(cfg: TokenizerConfig, data_dir: Path, record: Record) -> list[str]:
    from kolm.data.io import read_split

    if not (data_dir / "train").is_dir():
        raise DataError(f"no curated data at {data_dir / 'train'}; run `kolm data` first")
    record(data_dir / "train")
    limit = cfg.max_train_docs
    texts = []
    for text in read_split(data_dir, "train"):
        texts.append(text)
        if limit and len(texts) >= limit:
            break
    if not texts:
        raise DataError(f"{data_dir / 'train'} holds no text; re-run `kolm data` with looser filters")
    return texts


def heldout_texts(cfg: TokenizerConfig, data_dir: Path, record: Record = _no_record) -> list[str]:
    """Comparison texts: tokenizer.compare_file, else data/validation, at most compare_docs documents."""
    n = cfg.compare_docs
    if cfg.compare_file:
        path = record(Path(cfg.compare_file))
        from collections import Counter

        from kolm.data.sources import read_file

        issues: Counter = Counter()
        texts = [t for _, t in read_file(Path(path), "text", issues)][:n]
    else:
        from kolm.data.io import read_split

        if not (data_dir / "validation").is_dir():
            raise DataError(
                f"no held-out text: {data_dir / 'validation'} is missing; run `kolm data` or set tokenizer.compare_file"
            )
        record(data_dir / "validation")
        texts = []
        for t in read_split(data_dir, "validation"):
            texts.append(t)
            if len(texts) >= n:
                break
    if not texts:
        raise DataError(
            "no held-out text to compare tokenizers on; set tokenizer.compare_file or data.val_fraction > 0"
        )
    return texts


def compare_tokenizers(
    cfg: TokenizerConfig,
    *,
    data_dir: Path,
    out: Path,
    main_kind: str | None = None,
    progress: Progress | None = None,
    record: Record = _no_record,
) -> dict[str, Any]:
    """Compare the tokenizer in `out`, its candidates and `cfg.compare_dirs` on held-out text; writes out/compare/."""
    from kolm.tokenizer.compare import compare_dirs

    progress = progress or Progress(enabled=False)
    dirs: dict[str, Path] = {}
    if main_kind and (out / "tokenizer.json").is_file():
        dirs[main_kind] = out
    cand = out / "candidates"
    if cand.is_dir():
        for d in sorted(cand.iterdir()):
            if (d / "tokenizer.json").is_file() and d.name not in dirs:
                dirs[d.name] = d
    for extra in cfg.compare_dirs:
        p = Path(extra).expanduser()
        record(p)
        dirs[p.name if p.name not in dirs else str(p)] = p
    if not dirs:
        raise DataError(
            "nothing to compare: train tokenizers first (`kolm tokenizer train`) or set tokenizer.compare_dirs"
        )
    texts = heldout_texts(cfg, data_dir, record)
    with progress.task(f"compare {len(dirs)} tokenizers", total=None):
        return compare_dirs(dirs, texts, out / "compare", list(cfg.sentences), cfg.kiwi_docs, log=progress.log)


def _summary(out: Path, stats: dict[str, Any], report: dict[str, Any] | None) -> None:
    lines = [
        "# Tokenizer (토크나이저)",
        "",
        f"Model tokenizer: **{stats['kind']}**, vocabulary {stats['vocab_size']:,}, trained on "
        f"{stats['train_docs']:,} documents ({stats['train_chars']:,} characters) in {stats['train_time_s']} s.",
        "",
    ]
    if report is not None:
        from kolm.tokenizer.compare import compare_markdown

        md = compare_markdown(report, (out / "compare" / "compare.png").is_file())
        md = md.replace("](compare.png)", "](compare/compare.png)").replace(
            "# Tokenizer comparison", "## Tokenizer comparison"
        )
        lines.append(md)
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")


def train_tokenizers(
    cfg: TokenizerConfig, *, data_dir: Path, out: Path, progress: Progress | None = None, record: Record = _no_record
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Train `cfg.kind` into `out` and each of `cfg.compare` into out/candidates/, then compare them.

    Returns (stats of every trained kind, comparison report or None).
    """
    from kolm.tokenizer.train import save_tokenizer, train_tokenizer

    progress = progress or Progress(enabled=False)
    texts = _train_texts(cfg, Path(data_dir), record)
    kinds = [cfg.kind] + [k for k in dict.fromkeys(cfg.compare) if k != cfg.kind]
    stats = {}
    shutil.rmtree(out / "candidates", ignore_errors=True)  # candidates of an earlier config must not be compared
    with progress.task(f"train {len(kinds)} tokenizer(s)", total=len(kinds)) as bar:
        for kind in kinds:
            tok, st = train_tokenizer(kind, texts, cfg)
            save_tokenizer(tok, out if kind == cfg.kind else out / "candidates" / kind, st)
            progress.log(f"{kind}: vocabulary {st['vocab_size']:,}, trained in {st['train_time_s']} s")
            stats[kind] = st
            bar.advance(1)
    report = None
    if cfg.compare or cfg.compare_dirs:
        report = compare_tokenizers(
            cfg, data_dir=data_dir, out=out, main_kind=cfg.kind, progress=progress, record=record
        )
    _summary(out, stats[cfg.kind], report)
    return stats, report


def run(ctx: StageContext) -> StageResult:
    """Stage `tokenizer` (action train): train cfg.tokenizer.kind, the candidates in cfg.tokenizer.compare, compare."""
    cfg = ctx.cfg.tokenizer
    stats, report = train_tokenizers(
        cfg, data_dir=ctx.stage_dir("data"), out=ctx.out, progress=ctx.progress, record=ctx.input
    )
    outputs = {
        "tokenizer": ctx.stage.dir,
        "stats": ctx.output(ctx.out / "stats.json"),
        "summary": ctx.output(ctx.out / "summary.md"),
    }
    metrics: dict[str, Any] = {
        "vocab_size": stats[cfg.kind]["vocab_size"],
        "train_time_s": stats[cfg.kind]["train_time_s"],
    }
    if report is not None:
        outputs["compare"] = ctx.output(ctx.out / "compare" / "compare.md")
        main = report["results"].get(cfg.kind, {})
        metrics.update({k: main.get(k) for k in ("chars_per_token", "fertility", "boundary_agreement")})
    return StageResult(outputs=outputs, metrics=metrics)


def run_compare(ctx: StageContext) -> StageResult:
    """Stage `tokenizer` action compare: the trained tokenizer, its candidates and tokenizer.compare_dirs."""
    stats_file = ctx.out / "stats.json"
    main_kind = json.loads(stats_file.read_text(encoding="utf-8"))["kind"] if stats_file.is_file() else None
    report = compare_tokenizers(
        ctx.cfg.tokenizer,
        data_dir=ctx.stage_dir("data"),
        out=ctx.out,
        main_kind=main_kind,
        progress=ctx.progress,
        record=ctx.input,
    )
    return StageResult(
        outputs={"compare": ctx.output(ctx.out / "compare" / "compare.md")},
        metrics={
            f"{name}.{k}": m[k]
            for name, m in report["results"].items()
            for k in ("chars_per_token", "fertility")
            if m.get(k) is not None
        },
    )
