"""PII redaction for Korean text: e-mail, phone numbers, 주민등록번호, card numbers, IP addresses.

Numbers are validated before they are replaced, so ordinary numbers survive:
a resident registration number must pass its check digit, a card number the
Luhn check, an IP address four octets in 0-255. Each match becomes a typed
placeholder (`<rrn>`, `<card>`, ...) so a model still sees that something stood there.
"""

from __future__ import annotations

import re
from collections import Counter

from kolm.data.normalize import EMAIL_RE

__all__ = ["PII_KINDS", "rrn_valid", "luhn_valid", "redact"]

PII_KINDS = ("email", "rrn", "card", "phone", "ip")

# 주민등록번호: YYMMDD-GNNNNNC; the 7th digit (1-4 born 1900/2000s Koreans, 5-8 foreigners) must be 1-8.
_RRN_RE = re.compile(r"(?<!\d)(\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))\s?-?\s?([1-8]\d{6})(?!\d)")
# Cards: 13-19 digits, optionally grouped by spaces or hyphens (4-4-4-4, 4-6-5 Amex).
_CARD_RE = re.compile(r"(?<![\d-])(\d(?:[ -]?\d){12,18})(?![\d-])")
# Mobile 010/011/016-019; Seoul 02; regional 031-064; internet phone 070; representative numbers 15xx/16xx/18xx.
_PHONE_RE = re.compile(
    r"(?<![\d-])(?:"
    r"(?:\+82[ -]?\(?0?|\(?0)(?:1[016789]|2|[3-6][1-5]|70)\)?[ .-]?\d{3,4}[ .-]?\d{4}"
    r"|1[568]\d{2}-\d{4}"
    r")(?![\d-])"
)
_IP_RE = re.compile(r"(?<![\d.])((?:\d{1,3}\.){3}\d{1,3})(?![\d.])")


def rrn_valid(digits: str) -> bool:
    """True when 13 digits pass the 주민등록번호 check digit (weights 2..9,2..5; (11 - sum % 11) % 10).

    Numbers issued since October 2020 carry a random last digit; like every
    public validator we treat only checksum-valid numbers as certain PII.
    """
    if len(digits) != 13 or not digits.isdigit():
        return False
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    total = sum(int(d) * w for d, w in zip(digits[:12], weights))
    return (11 - total % 11) % 10 == int(digits[12])


def luhn_valid(digits: str) -> bool:
    """Luhn checksum of a card number (13-19 digits)."""
    if not 13 <= len(digits) <= 19 or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ip_valid(text: str) -> bool:
    return all(int(p) <= 255 for p in text.split("."))


def redact(text: str, kinds: tuple[str, ...] | list[str] = PII_KINDS, counts: Counter | None = None) -> str:
    """Replace PII in `text` by typed placeholders; add per-kind counts to `counts` when given.

    Order: e-mail first (its digits must not look like phones), then the
    checksummed numbers (RRN, card) before the looser phone pattern.
    """
    if counts is None:
        counts = Counter()
    if "email" in kinds and "@" in text:
        text, n = EMAIL_RE.subn("<email>", text)
        counts["email"] += n
    if not any(c.isdigit() for c in text):
        return text
    if "rrn" in kinds:

        def _rrn(m: re.Match[str]) -> str:
            if rrn_valid(m.group(1) + m.group(2)):
                counts["rrn"] += 1
                return "<rrn>"
            return m.group(0)

        text = _RRN_RE.sub(_rrn, text)
    if "card" in kinds:

        def _card(m: re.Match[str]) -> str:
            digits = re.sub(r"[ -]", "", m.group(1))
            if luhn_valid(digits):
                counts["card"] += 1
                return "<card>"
            return m.group(0)

        text = _CARD_RE.sub(_card, text)
    if "phone" in kinds:
        text, n = _PHONE_RE.subn("<phone>", text)
        counts["phone"] += n
    if "ip" in kinds:

        def _ip(m: re.Match[str]) -> str:
            if _ip_valid(m.group(1)):
                counts["ip"] += 1
                return "<ip>"
            return m.group(0)

        text = _IP_RE.sub(_ip, text)
    return text
