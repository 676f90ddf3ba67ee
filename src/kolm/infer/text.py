"""Token ids to text as they arrive: incremental decoding, stop strings, and text that is never taken back.

Two things make streamed text tricky:

* byte-level BPE splits one Hangul syllable (three UTF-8 bytes) over several
  tokens, so the text of a prefix can end in half a character ("\\ufffd");
* a stop string may arrive over several tokens, and the part already seen must
  not be shown if the rest follows.

`TextStream` decodes a growing list of token ids, cuts the text at the first
stop string and hands out only text that can no longer change. It decodes a
short window of recent tokens instead of the whole sequence each step, with a
few tokens of left context so tokenizers that drop a word's leading space at
the start of a decode (SentencePiece-style) still join words correctly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TextStream", "stop_cut", "held_back", "token_bytes"]


def stop_cut(text: str, stops: list[str], keep: bool) -> int | None:
    """End index of `text` to keep when a stop string occurs, else None (the earliest stop wins)."""
    best = None
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, i + len(s))
    if best is None:
        return None
    return best[1] if keep else best[0]


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might be the start of a stop string or an unfinished character."""
    hold = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                hold = max(hold, n)
                break
    if text.endswith("\ufffd"):  # incomplete UTF-8 sequence: wait for the next byte-token
        hold = max(hold, len(text) - len(text.rstrip("\ufffd")))
    return hold


class TextStream:
    """Incremental text of one generated sequence, with stop strings.

    `push(token_id)` returns the newly safe text (possibly ""); `stopped` turns
    True when a stop string was found (the text is then final and cut);
    `finish()` returns whatever was held back once generation has ended.
    `text` is everything decoded so far (the final text after `finish`).
    """

    _CONTEXT = 4  # tokens of left context re-decoded with each new token

    def __init__(self, tokenizer: Any, stops: list[str] | None = None, include_stop: bool = False):
        self.tokenizer = tokenizer
        self.stops = [s for s in (stops or []) if s]
        self.include_stop = include_stop
        self.ids: list[int] = []
        self.text = ""  # decoded text of ids[:read]
        self.emitted = 0  # characters of `text` already handed out
        self.stopped = False
        self._prefix = 0  # ids[prefix:read] is the left context of the next decode
        self._read = 0  # ids[:read] are in `text`

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that became safe to show."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        context = self._decode(self.ids[self._prefix : self._read])
        window = self._decode(self.ids[self._prefix :])
        pending = window[len(context) :] if len(window) > len(context) else ""
        if pending and not pending.endswith("\ufffd"):
            # The new tokens complete whole characters: commit them and slide the context window.
            self.text += pending
            self._read = len(self.ids)
            self._prefix = max(self._prefix, self._read - self._CONTEXT)
            pending = ""
        return self._advance(pending, final=False)

    def _advance(self, pending: str, final: bool) -> str:
        """Look for a stop string in the new text (+ an unfinished character); return what is now safe."""
        if self.stops:
            # A stop string can only start within the unshown tail plus (longest stop - 1) characters.
            start = max(0, self.emitted - max(len(s) for s in self.stops))
            cut = stop_cut(self.text[start:] + pending, self.stops, self.include_stop)
            if cut is not None:
                self.text = (self.text + pending)[: start + cut]
                self.stopped = True
                final = True
        safe = len(self.text) if final else len(self.text) - held_back(self.text, self.stops)
        if safe <= self.emitted:
            return ""
        piece = self.text[self.emitted : safe]
        self.emitted = safe
        return piece

    def finish(self) -> str:
        """Generation ended: decode whatever is pending (a dangling byte shows as U+FFFD) and release it."""
        if not self.stopped and self._read < len(self.ids):
            context = self._decode(self.ids[self._prefix : self._read])
            self.text += self._decode(self.ids[self._prefix :])[len(context) :]
            self._read = len(self.ids)
        return self._advance("", final=True)


def _byte_level_table() -> dict[str, int]:
    """Byte-level BPE's printable stand-ins -> the bytes they stand for (GPT-2's layout)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in keep}
    shifted = 0
    for b in range(256):
        if b not in table.values():
            table[chr(256 + shifted)] = b  # bytes without a printable form are moved past U+00FF in order
            shifted += 1
    return table


_BYTE_LEVEL: dict[str, int] | None = None


def token_bytes(tokenizer: Any, token_id: int) -> list[int]:
    """The raw UTF-8 bytes of one token (half a Hangul syllable for some byte-level tokens)."""
    global _BYTE_LEVEL
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if type(decoder).__name__ == "ByteLevel" and token_id not in tokenizer.all_special_ids:
        if _BYTE_LEVEL is None:
            _BYTE_LEVEL = _byte_level_table()
        symbol = tokenizer.convert_ids_to_tokens(token_id)
        if all(ch in _BYTE_LEVEL for ch in symbol):
            return [_BYTE_LEVEL[ch] for ch in symbol]
    return list(tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8"))
