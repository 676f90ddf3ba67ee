"""The tokenizer stage: `kolm tokenizer train` (the model's tokenizer + candidates) and `kolm tokenizer compare`.

Layout of the stage folder:
  tokenizer/                 the model's tokenizer (cfg.tokenizer.kind): tokenizer.json, tokenizer_config.json, stats.json
  tokenizer/candidates/<k>/  other kinds from cfg.tokenizer.compare, same files
  tokenizer/compare/         compare.json, compare.md, compare.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kolm.errors import DataError

__all__ = ["run", "run_compare", "heldout_texts"]


def _train_texts(ctx: Any) -> list[str]:
    from kolm.data.io import read_split

    data_dir = ctx.stage_dir("data")
    if not (data_dir / "train").is_dir():
        raise DataError(f"no curated data at {data_dir / 'train'}; run `kolm data` first")
    ctx.input(data_dir / "train")
    limit = ctx.cfg.tokenizer.max_train_docs
    texts = []
    for text in read_split(data_dir, "train"):
        texts.append(text)
        if limit and len(texts) >= limit:
            break
    if not texts:
        raise DataError(f"{data_dir / 'train'} holds no text; re-run `kolm data` with looser filters")
    return texts


def heldout_texts(ctx: Any) -> list[str]:
    """Comparison texts: tokenizer.compare_file, else data/validation, at most compare_docs documents."""
    cfg = ctx.cfg.tokenizer
    n = cfg.compare_docs
    if cfg.compare_file:
        path = ctx.input(cfg.compare_file)
        from collections import Counter

        from kolm.data.sources import read_file

        issues: Counter = Counter()
        texts = [t for _, t in read_file(Path(path), "text", issues)][:n]
    else:
        from kolm.data.io import read_split

        data_dir = ctx.stage_dir("data")
        if not (data_dir / "validation").is_dir():
            raise DataError(f"no held-out text: {data_dir / 'validation'} is missing; run `kolm data` or set tokenizer.compare_file")
        ctx.input(data_dir / "validation")
        texts = []
        for t in read_split(data_dir, "validation"):
            texts.append(t)
            if len(texts) >= n:
                break
    if not texts:
        raise DataError("no held-out text to compare tokenizers on; set tokenizer.compare_file or data.val_fraction > 0")
    return texts


def _compare(ctx: Any, main_kind: str | None) -> dict[str, Any] | None:
    from kolm.tokenizer.compare import compare_dirs

    cfg = ctx.cfg.tokenizer
    dirs: dict[str, Path] = {}
    if main_kind and (ctx.out / "tokenizer.json").is_file():
        dirs[main_kind] = ctx.out
    cand = ctx.out / "candidates"
    if cand.is_dir():
        for d in sorted(cand.iterdir()):
            if (d / "tokenizer.json").is_file() and d.name not in dirs:
                dirs[d.name] = d
    for extra in cfg.compare_dirs:
        p = Path(extra).expanduser()
        ctx.input(p)
        dirs[p.name if p.name not in dirs else str(p)] = p
    if not dirs:
        raise DataError("nothing to compare: train tokenizers first (`kolm tokenizer train`) or set tokenizer.compare_dirs")
    texts = heldout_texts(ctx)
    with ctx.task(f"compare {len(dirs)} tokenizers", total=None):
        return compare_dirs(dirs, texts, ctx.out / "compare", list(cfg.sentences), cfg.kiwi_docs, log=ctx.log)


def _summary(ctx: Any, stats: dict[str, Any], report: dict[str, Any] | None) -> None:
    lines = ["# Tokenizer (토크나이저)", "",
             f"Model tokenizer: **{stats['kind']}**, vocabulary {stats['vocab_size']:,}, trained on "
             f"{stats['train_docs']:,} documents ({stats['train_chars']:,} characters) in {stats['train_time_s']} s.", ""]
    if report is not None:
        from kolm.tokenizer.compare import compare_markdown

        md = compare_markdown(report, (ctx.out / "compare" / "compare.png").is_file())
        md = md.replace("](compare.png)", "](compare/compare.png)").replace("# Tokenizer comparison", "## Tokenizer comparison")
        lines.append(md)
    (ctx.out / "summary.md").write_text("\n".join(lines), encoding="utf-8")


def run(ctx: Any) -> Any:
    """Stage `tokenizer` (action train): train cfg.tokenizer.kind, the candidates in cfg.tokenizer.compare, compare."""
    from kolm.run import StageResult
    from kolm.tokenizer.train import save_tokenizer, train_tokenizer

    cfg = ctx.cfg.tokenizer
    texts = _train_texts(ctx)
    kinds = [cfg.kind] + [k for k in dict.fromkeys(cfg.compare) if k != cfg.kind]
    stats = {}
    import shutil

    shutil.rmtree(ctx.out / "candidates", ignore_errors=True)  # candidates of an earlier config must not be compared
    with ctx.task(f"train {len(kinds)} tokenizer(s)", total=len(kinds)) as bar:
        for kind in kinds:
            tok, st = train_tokenizer(kind, texts, cfg)
            save_tokenizer(tok, ctx.out if kind == cfg.kind else ctx.out / "candidates" / kind, st)
            ctx.log(f"{kind}: vocabulary {st['vocab_size']:,}, trained in {st['train_time_s']} s")
            stats[kind] = st
            bar.advance(1)
    report = _compare(ctx, cfg.kind) if (cfg.compare or cfg.compare_dirs) else None
    _summary(ctx, stats[cfg.kind], report)
    outputs = {"tokenizer": "tokenizer", "stats": "tokenizer/stats.json", "summary": "tokenizer/summary.md"}
    metrics: dict[str, Any] = {"vocab_size": stats[cfg.kind]["vocab_size"], "train_time_s": stats[cfg.kind]["train_time_s"]}
    if report is not None:
        outputs["compare"] = "tokenizer/compare/compare.md"
        main = report["results"].get(cfg.kind, {})
        metrics.update({k: main.get(k) for k in ("chars_per_token", "fertility", "boundary_agreement")})
    return StageResult(outputs=outputs, metrics=metrics)


def run_compare(ctx: Any) -> Any:
    """Stage `tokenizer` action compare: the trained tokenizer, its candidates and tokenizer.compare_dirs."""
    from kolm.run import StageResult

    stats_file = ctx.out / "stats.json"
    main_kind = json.loads(stats_file.read_text(encoding="utf-8"))["kind"] if stats_file.is_file() else None
    report = _compare(ctx, main_kind)
    return StageResult(outputs={"compare": "tokenizer/compare/compare.md"},
                       metrics={f"{name}.{k}": m[k] for name, m in report["results"].items()
                                for k in ("chars_per_token", "fertility") if m.get(k) is not None})
