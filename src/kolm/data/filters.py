"""Document quality filters for Korean text; each returns the reason a document is dropped, or None.

Language check by Hangul share (no model download), length in characters and
어절, symbol/digit/URL shares, Gopher-style repetition (Rae et al. 2021:
duplicate line/paragraph fractions, top word n-gram character fractions),
bad words, Korean web boilerplate, and an optional Kiwi morpheme count.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from kolm.data.normalize import URL_RE
from kolm.errors import DataError

__all__ = [
    "hangul_ratio",
    "symbol_ratio",
    "digit_ratio",
    "url_ratio",
    "dup_line_frac",
    "dup_para_frac",
    "top_ngram_frac",
    "DocFilter",
    "build_filters",
]


def _is_hangul(ch: str) -> bool:
    o = ord(ch)
    # syllables, jamo, compatibility jamo (ㅋ, ㅠ), jamo extended A/B
    return (
        0xAC00 <= o <= 0xD7A3
        or 0x1100 <= o <= 0x11FF
        or 0x3130 <= o <= 0x318F
        or 0xA960 <= o <= 0xA97F
        or 0xD7B0 <= o <= 0xD7FF
    )


def hangul_ratio(text: str) -> float:
    """Share of Hangul among letters (digits, spaces, punctuation, emoji do not count)."""
    letters = hangul = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            if _is_hangul(ch):
                hangul += 1
    return hangul / letters if letters else 0.0


_SYMBOL_PUNCT = set("#*@&|/\\_=+<>[]{}")


def _is_symbol(ch: str) -> bool:
    # Unicode symbols (★ ♥ ^ © emoji) and markup-like punctuation; sentence punctuation (. , ! ? ~ …)
    # is not counted: Korean reviews write "최고다..." and must not be dropped for it
    return unicodedata.category(ch)[0] == "S" or ch in _SYMBOL_PUNCT


def symbol_ratio(text: str) -> float:
    """Share of symbol characters (Unicode symbols, emoji, markup punctuation) among non-space characters."""
    total = sym = 0
    for ch in text:
        if ch.isspace():
            continue
        total += 1
        if not ch.isalnum() and _is_symbol(ch):
            sym += 1
    return sym / total if total else 0.0


def digit_ratio(text: str) -> float:
    """Share of digits among non-space characters."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isdigit() for c in chars) / len(chars) if chars else 0.0


def url_ratio(text: str) -> float:
    """Share of characters inside URLs."""
    if "http" not in text and "www." not in text:
        return 0.0
    return sum(len(m) for m in URL_RE.findall(text)) / max(len(text), 1)


def dup_line_frac(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return (len(lines) - len(set(lines))) / len(lines) if len(lines) > 1 else 0.0


def dup_para_frac(text: str) -> float:
    """Share of paragraphs (blank-line separated) that repeat an earlier paragraph."""
    paras = [p for p in text.split("\n\n") if p.strip()]
    return (len(paras) - len(set(paras))) / len(paras) if len(paras) > 1 else 0.0


def top_ngram_frac(words: list[str], n: int) -> float:
    """Share of word characters covered by the most frequent word n-gram (Gopher)."""
    if len(words) < n + 1:
        return 0.0
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    total = sum(len(w) for w in words)
    return count * sum(len(w) for w in gram) / total if total else 0.0


class DocFilter:
    """All filters of a `FilterConfig`, applied in order; `check(text)` returns (name, detail) or None."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        words = list(cfg.bad_words)
        if cfg.bad_words_file:
            path = Path(cfg.bad_words_file)
            if not path.is_file():
                raise DataError(f"data.filters.bad_words_file: {path} not found")
            words += [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]
        self.bad_words = [unicodedata.normalize("NFC", w) for w in words]
        self.boilerplate = [unicodedata.normalize("NFC", b) for b in cfg.boilerplate]
        self.ngram_limits = sorted((int(k), float(v)) for k, v in cfg.max_top_ngram_frac.items())
        self._kiwi = None
        self.names = [
            "length",
            "eojeol",
            "hangul_ratio",
            "symbol_ratio",
            "digit_ratio",
            "url_ratio",
            "repetition",
            "bad_words",
            "boilerplate",
        ] + (["morphemes"] if cfg.min_morphemes else [])

    def check(self, text: str) -> tuple[str, str] | None:
        """First filter that rejects `text` as (filter name, human-readable reason), or None to keep it."""
        c = self.cfg
        n = len(text)
        if n < c.min_chars:
            return "length", f"{n} chars < min_chars {c.min_chars}"
        if c.max_chars and n > c.max_chars:
            return "length", f"{n} chars > max_chars {c.max_chars}"
        words = text.split()
        if len(words) < c.min_eojeol:
            return "eojeol", f"{len(words)} 어절 < min_eojeol {c.min_eojeol}"
        r = url_ratio(text)
        if r > c.max_url_ratio:
            return "url_ratio", f"URL share {r:.2f} > {c.max_url_ratio}"
        r = hangul_ratio(URL_RE.sub("", text) if r else text)  # Latin letters of a URL are not a language signal
        if r < c.min_hangul_ratio:
            return "hangul_ratio", f"Hangul share {r:.2f} < {c.min_hangul_ratio}"
        r = symbol_ratio(text)
        if r > c.max_symbol_ratio:
            return "symbol_ratio", f"symbol share {r:.2f} > {c.max_symbol_ratio}"
        r = digit_ratio(text)
        if r > c.max_digit_ratio:
            return "digit_ratio", f"digit share {r:.2f} > {c.max_digit_ratio}"
        if "\n" in text:
            r = dup_line_frac(text)
            if r > c.max_dup_line_frac:
                return "repetition", f"duplicate lines {r:.2f} > {c.max_dup_line_frac}"
            r = dup_para_frac(text)
            if r > c.max_dup_para_frac:
                return "repetition", f"duplicate paragraphs {r:.2f} > {c.max_dup_para_frac}"
        for ng, limit in self.ngram_limits:
            r = top_ngram_frac(words, ng)
            if r > limit:
                return "repetition", f"top {ng}-gram covers {r:.2f} > {limit}"
        for w in self.bad_words:
            if w in text:
                return "bad_words", f"contains {w!r}"
        if self.boilerplate:
            hit = self._boilerplate_frac(text)
            if hit > c.max_boilerplate_frac:
                return "boilerplate", f"boilerplate lines cover {hit:.2f} > {c.max_boilerplate_frac}"
        if c.min_morphemes:
            m = self._morphemes(text)
            if m < c.min_morphemes:
                return "morphemes", f"{m} morphemes < min_morphemes {c.min_morphemes}"
        return None

    def strip_boilerplate(self, text: str) -> tuple[str, int]:
        """Remove short lines holding a boilerplate phrase from a kept document; (text, lines removed).

        A news article that passed the filters still ends in "무단전재 및 재배포 금지"; a language
        model should not learn to write that footer after every paragraph.
        """
        if not self.boilerplate or not any(b in text for b in self.boilerplate):
            return text, 0
        kept, dropped = [], 0
        for line in text.split("\n"):
            if len(line) <= 200 and any(b in line for b in self.boilerplate):
                dropped += 1
            else:
                kept.append(line)
        return "\n".join(kept).strip(), dropped

    def _boilerplate_frac(self, text: str) -> float:
        if not any(b in text for b in self.boilerplate):
            return 0.0
        lines = [ln for ln in text.split("\n") if ln.strip()]
        bad = sum(len(ln) for ln in lines if any(b in ln for b in self.boilerplate))
        return bad / max(sum(len(ln) for ln in lines), 1)

    def _morphemes(self, text: str) -> int:
        if self._kiwi is None:
            from kiwipiepy import Kiwi  # heavy: loaded only when the morpheme filter is on

            self._kiwi = Kiwi()
        return len(self._kiwi.tokenize(text))


def build_filters(cfg: Any) -> Callable[[str], tuple[str, str] | None]:
    """The `check` function of a `DocFilter` for `cfg` (a FilterConfig)."""
    return DocFilter(cfg).check
