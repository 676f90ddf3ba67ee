"""Compare tokenizer directories on held-out Korean text: compression, fertility, morpheme agreement, speed.

Metrics per tokenizer (all on the same texts):
- chars/token: characters per token (higher = better compression).
- fertility: tokens per 어절 (whitespace word); split share: 어절 cut into 2+ tokens.
- unk/byte-fallback rate: share of tokens that are `<unk>` or `<0xNN>` pieces.
- vocab used: share of the vocabulary that appears at least once.
- boundary agreement: share of token boundaries inside an 어절 that fall on a
  Kiwi morpheme boundary (on `kiwi_docs` documents; Kiwi is slow).
- round trip: share of texts with decode(encode(x)) == x.
- throughput: MB/s of UTF-8, one text at a time (single thread) and batched.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_tokenizer", "measure", "compare_dirs", "segment", "kiwi_boundaries"]

_BYTE_RE = re.compile(r"^<0x[0-9A-F]{2}>$")


def load_tokenizer(path: str | Path) -> Any:
    """AutoTokenizer from a directory; only fast tokenizers (tokenizer.json) give offsets for the metrics."""
    from transformers import AutoTokenizer

    from kolm.errors import DataError

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # a missing/broken dir is a user error, not a crash
        raise DataError(f"cannot load a tokenizer from {path} ({exc.__class__.__name__}: {exc})") from None
    if not getattr(tok, "is_fast", False):
        raise DataError(f"{path}: not a fast tokenizer (no tokenizer.json); convert it first")
    return tok


def kiwi_boundaries(texts: list[str]) -> list[set[int]]:
    """Character positions inside an 어절 where Kiwi starts a new morpheme, per text."""
    from kolm.tokenizer.train import get_kiwi

    kiwi = get_kiwi()
    out = []
    for text, tokens in zip(texts, kiwi.tokenize(texts)):
        out.append(
            {
                t.start
                for t in tokens
                if 0 < t.start < len(text) and not text[t.start - 1].isspace() and not text[t.start].isspace()
            }
        )
    return out


def _token_cuts(text: str, offsets: list[tuple[int, int]]) -> set[int]:
    """Positions inside an 어절 where one token ends and the next begins."""
    cuts = set()
    for _start, e in offsets:
        if 0 < e < len(text) and not text[e - 1].isspace() and not text[e].isspace():
            cuts.add(e)
    return cuts


def measure(tok: Any, texts: list[str]) -> dict[str, Any]:
    """All comparison metrics of one tokenizer on `texts` except morpheme agreement (see `measure_boundaries`)."""
    backend = tok.backend_tokenizer
    specials = set(tok.all_special_ids)
    unk_id = tok.unk_token_id
    byte_ids = {i for t, i in tok.get_vocab().items() if _BYTE_RE.match(t)}
    encs = backend.encode_batch(texts, add_special_tokens=False)
    n_tok = n_chars = n_eojeol = n_split = n_unk = n_rt = 0
    used: set[int] = set()
    for text, enc in zip(texts, encs):
        ids = enc.ids
        n_tok += len(ids)
        n_chars += len(text)
        used.update(ids)
        n_unk += sum(1 for i in ids if i == unk_id or i in byte_ids)
        # tokens per 어절: assign each token to the 어절 of its first non-space character
        word_of = np.full(len(text) + 1, -1, dtype=np.int64)
        for w, m in enumerate(re.finditer(r"\S+", text)):
            word_of[m.start() : m.end()] = w
        n_words = int(word_of.max()) + 1 if len(text) else 0
        counts = np.zeros(max(n_words, 1), dtype=np.int64)
        for s, e in enc.offsets:
            seg = word_of[s:e]
            seg = seg[seg >= 0]
            if len(seg):
                counts[seg[0]] += 1
        n_eojeol += n_words
        n_split += int((counts[:n_words] >= 2).sum())
        n_rt += int(tok.decode(ids, skip_special_tokens=False) == text)
    data = "".join(texts).encode("utf-8")
    mb = len(data) / 1e6
    t0 = time.perf_counter()
    for text in texts:
        backend.encode(text, add_special_tokens=False)
    single = mb / max(time.perf_counter() - t0, 1e-9)
    t0 = time.perf_counter()
    backend.encode_batch(texts, add_special_tokens=False)
    batch = mb / max(time.perf_counter() - t0, 1e-9)
    vocab = len(tok)
    return {
        "vocab_size": vocab,
        "tokens": n_tok,
        "chars_per_token": round(n_chars / max(n_tok, 1), 3),
        "fertility": round(n_tok / max(n_eojeol, 1), 3),
        "split_eojeol_share": round(n_split / max(n_eojeol, 1), 3),
        "unk_or_byte_rate": round(n_unk / max(n_tok, 1), 4),
        "vocab_used": round(len(used - specials) / max(vocab, 1), 3),
        "boundary_agreement": None,
        "round_trip": round(n_rt / max(len(texts), 1), 4),
        "mb_per_s_single": round(single, 2),
        "mb_per_s_batch": round(batch, 2),
    }


def segment(tok: Any, sentence: str) -> list[str]:
    """Token pieces of `sentence` as substrings of the original (readable for byte-level tokenizers)."""
    enc = tok.backend_tokenizer.encode(sentence, add_special_tokens=False)
    pieces, last_end = [], -1
    for (s, e), piece in zip(enc.offsets, enc.tokens):
        if e <= last_end:  # one character split into several bytes: show it once
            continue
        pieces.append(sentence[max(s, last_end) : e].strip() or piece)
        last_end = e
    return pieces


def _chart(results: dict[str, dict[str, Any]], path: Path) -> None:
    keys = [
        ("chars_per_token", "chars / token ↑"),
        ("fertility", "tokens / 어절 ↓"),
        ("boundary_agreement", "morpheme agreement ↑"),
    ]
    from kolm.plotting import setup_korean_font

    setup_korean_font()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(10, 3.6))
    names = list(results)
    for ax, (key, title) in zip(axes, keys):
        vals = [results[n].get(key) or 0 for n in names]
        ax.bar(range(len(names)), vals, color=plt.cm.tab10.colors[: len(names)])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    fig.suptitle("토크나이저 비교 / tokenizer comparison")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare_dirs(
    dirs: dict[str, Path], texts: list[str], out: Path, sentences: list[str], kiwi_docs: int = 300, log: Any = print
) -> dict[str, Any]:
    """Measure every tokenizer dir on `texts`; write compare.json, compare.md, compare.png into `out`."""
    from kolm.files import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    kiwi_texts = texts[:kiwi_docs]
    kiwi_cuts = kiwi_boundaries(kiwi_texts) if kiwi_docs else None
    results: dict[str, dict[str, Any]] = {}
    segs: dict[str, list[list[str]]] = {}
    for name, d in dirs.items():
        tok = load_tokenizer(d)
        m = measure(tok, texts)
        if kiwi_cuts is not None:
            m["boundary_agreement"] = measure_boundaries(tok, kiwi_texts, kiwi_cuts)
        stats_file = Path(d) / "stats.json"
        stats = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.is_file() else {}
        m["train_time_s"] = stats.get("train_time_s")
        m["kind"] = stats.get("kind", "external")
        results[name] = m
        segs[name] = [segment(tok, s) for s in sentences]
        log(
            f"{name}: {m['chars_per_token']} chars/token, fertility {m['fertility']}, agreement {m['boundary_agreement']}"
        )
    report = {
        "docs": len(texts),
        "chars": sum(len(t) for t in texts),
        "kiwi_docs": len(kiwi_texts),
        "results": results,
        "segmentations": {"sentences": sentences, "pieces": segs},
    }
    write_json(out / "compare.json", report)
    try:
        _chart(results, out / "compare.png")
        has_png = True
    except Exception:  # no matplotlib backend: the table is still written
        has_png = False
    (out / "compare.md").write_text(compare_markdown(report, has_png), encoding="utf-8")
    return report


def measure_boundaries(tok: Any, texts: list[str], kiwi_cuts: list[set[int]]) -> float | None:
    """Share of in-어절 token boundaries that fall on a Kiwi morpheme boundary."""
    encs = tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    agree = total = 0
    for text, enc, kc in zip(texts, encs, kiwi_cuts):
        cuts = _token_cuts(text, enc.offsets)
        total += len(cuts)
        agree += len(cuts & kc)
    return round(agree / total, 3) if total else None


_COLUMNS = [
    ("kind", "kind"),
    ("vocab_size", "vocab"),
    ("chars_per_token", "chars/token"),
    ("fertility", "tokens/어절"),
    ("split_eojeol_share", "어절 split 2+"),
    ("unk_or_byte_rate", "UNK/byte rate"),
    ("vocab_used", "vocab used"),
    ("boundary_agreement", "morpheme agreement"),
    ("round_trip", "round trip"),
    ("mb_per_s_single", "MB/s single"),
    ("mb_per_s_batch", "MB/s batch"),
    ("train_time_s", "train s"),
]


def compare_markdown(report: dict[str, Any], has_png: bool = True) -> str:
    """compare.md: metrics table, chart, and segmentations side by side."""
    lines = [
        "# Tokenizer comparison (토크나이저 비교)",
        "",
        f"Held-out text: {report['docs']:,} documents, {report['chars']:,} characters; "
        f"morpheme agreement on {report['kiwi_docs']} documents analysed with Kiwi.",
        "",
        "| tokenizer | " + " | ".join(h for _, h in _COLUMNS) + " |",
        "| --- | " + " | ".join("---:" for _ in _COLUMNS) + " |",
    ]
    for name, m in report["results"].items():
        cells = ["" if m.get(k) is None else (f"{m[k]:,}" if isinstance(m[k], int) else str(m[k])) for k, _ in _COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    if has_png:
        lines += ["![tokenizer comparison](compare.png)", ""]
    seg = report["segmentations"]
    for i, sentence in enumerate(seg["sentences"]):
        lines += [f"**{sentence}**", "", "| tokenizer | tokens | segmentation |", "| --- | ---: | --- |"]
        for name, pieces in seg["pieces"].items():
            shown = " · ".join(pieces[i]).replace("|", "\\|")
            lines.append(f"| {name} | {len(pieces[i])} | {shown} |")
        lines.append("")
    return "\n".join(lines)
