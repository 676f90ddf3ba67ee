"""Korean-aware text normalization: Unicode form, HTML, invisible characters, repeats, URLs, whitespace.

Punctuation is kept on purpose: a naive `[^\\w\\s가-힣]` clean-up deletes the
sentence endings and quotes a language model must learn to produce.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Callable

__all__ = [
    "URL_RE",
    "EMAIL_RE",
    "make_normalizer",
    "squash_repeats",
    "strip_html",
    "remove_invisible",
    "clean_whitespace",
]

URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_TAG_RE = re.compile(r"<\s*(?:br|p|div|li|tr|h[1-6])\b[^>]*>|<\s*/\s*(?:p|div|li|tr|h[1-6])\s*>", re.IGNORECASE)
_ANY_TAG_RE = re.compile(
    r"<!--.*?-->|<\s*(?:script|style)\b.*?<\s*/\s*(?:script|style)\s*>|</?[A-Za-z][^<>]*>", re.IGNORECASE | re.DOTALL
)
# Cc/Cf characters other than \n and \t: NUL, BOM, zero-width space/joiners, soft hyphen, bidi marks.
_INVISIBLE_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
_BLANKS_RE = re.compile(r"\n\s*\n+")


def strip_html(text: str) -> str:
    """Drop tags (block tags become newlines), scripts/styles and comments; unescape entities."""
    if "<" in text:
        text = _TAG_RE.sub("\n", text)
        text = _ANY_TAG_RE.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return text


def remove_invisible(text: str) -> str:
    """Remove control and zero-width characters; carriage returns become newlines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _INVISIBLE_RE.sub("", text)


def squash_repeats(text: str, max_run: int = 3) -> str:
    """Cap runs of one repeated character at `max_run` (ㅋㅋㅋㅋㅋㅋ -> ㅋㅋㅋ, !!!!! -> !!!).

    Digits are left alone (1000000 is a number, not noise) and so is whitespace,
    which `clean_whitespace` handles.
    """
    if max_run <= 0:
        return text
    pattern = _repeat_re(max_run)
    return pattern.sub(lambda m: m.group(1) * max_run, text)


_REPEAT_CACHE: dict[int, re.Pattern[str]] = {}


def _repeat_re(max_run: int) -> re.Pattern[str]:
    if max_run not in _REPEAT_CACHE:
        _REPEAT_CACHE[max_run] = re.compile(rf"([^\d\s])\1{{{max_run},}}")
    return _REPEAT_CACHE[max_run]


def clean_whitespace(text: str) -> str:
    """Collapse spaces (incl. NBSP, ideographic space), trim each line, keep at most one blank line."""
    text = _SPACES_RE.sub(" ", text)
    if "\n" in text:
        text = "\n".join(line.strip() for line in text.split("\n"))
        text = _BLANKS_RE.sub("\n\n", text)
    return text.strip()


def make_normalizer(
    form: str = "NFC",
    html_: bool = True,
    control: bool = True,
    max_run: int = 3,
    urls: str = "keep",
    whitespace: bool = True,
) -> Callable[[str], str]:
    """Build the normalization function from settings (see `NormalizeConfig`).

    Order matters: NFC first so composed and decomposed Hangul (NFD from macOS
    file names, old web pages) compare equal in every later step; HTML before
    whitespace so the newlines that tags become are cleaned too.
    """

    def normalize(text: str) -> str:
        text = unicodedata.normalize(form, text)
        if html_:
            text = strip_html(text)
        if control:
            text = remove_invisible(text)
        if urls == "placeholder":
            text = URL_RE.sub("<url>", text)
        elif urls == "remove":
            text = URL_RE.sub("", text)
        if max_run:
            text = squash_repeats(text, max_run)
        if whitespace:
            text = clean_whitespace(text)
        if html_ or form != "NFC":  # html.unescape can produce decomposed or compat characters again
            text = unicodedata.normalize(form, text)
        return text

    return normalize
