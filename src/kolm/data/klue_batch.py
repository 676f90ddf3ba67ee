"""KLUE examples into model rows, and token-level model outputs back into characters and answers.

One implementation for fine-tuning and for `kolm eval --suite klue`, so a
model is scored on exactly the tokens it was trained on.

* STS and RE are sentence tasks: one text ending in EOS, pooled by the
  sequence classifier (`batching.encode_for_classifier`). STS joins the two
  sentences; RE marks its entities in the sentence with typed punctuation
  markers, `@ *PER* 이순신 @` for the subject and `# ^LOC^ 서울 #` for the
  object (Zhou & Chen 2021): plain characters every tokenizer already has,
  so no new tokens and no resized embeddings.
* NER tags characters; a token takes the tag of its first non-space
  character (the fast tokenizer's offsets say which), and a predicted token
  tag goes back to its characters: the first gets it, the rest continue the
  entity as I- (or O).
* MRC reads `question, context window, EOS`: the question first, since a
  decoder sees only the left. A long context is cut into windows of
  `seq_len` tokens that overlap by `doc_stride` (at most half a window); a window without the whole
  answer (and every window of an unanswerable question) points start and end
  at its final EOS, the "no answer" position that has seen the whole window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kolm.data.batching import encode_for_classifier, pad_rows
from kolm.data.klue import MrcExample, NerSentence, ReExample, StsExample
from kolm.errors import DataError

__all__ = [
    "sts_text",
    "mark_entities",
    "encode_sts",
    "encode_re",
    "offsets",
    "encode_ner",
    "token_tags_to_chars",
    "MrcWindow",
    "encode_mrc",
    "collate_tokens",
    "collate_spans",
    "best_answer",
]


def sts_text(ex: StsExample) -> str:
    """The two sentences of a pair as one input."""
    return f"{ex.sentence1}\n{ex.sentence2}"


def mark_entities(ex: ReExample) -> str:
    """The sentence with typed punctuation markers around the subject (@ *TYPE* … @) and object (# ^TYPE^ … #)."""
    s, o = ex.subject, ex.object
    inserts = [
        (s.start, f"@ *{s.type}* "),
        (s.end + 1, " @"),
        (o.start, f"# ^{o.type}^ "),
        (o.end + 1, " #"),
    ]
    text = ex.sentence
    for pos, mark in sorted(inserts, key=lambda x: x[0], reverse=True):  # from the end: earlier offsets stay valid
        text = text[:pos] + mark + text[pos:]
    return text


def encode_sts(tokenizer: Any, examples: Sequence[StsExample], seq_len: int) -> list[dict[str, Any]]:
    """`{input_ids, label}` rows with the similarity score as a float label (regression)."""
    return [{"input_ids": encode_for_classifier(tokenizer, sts_text(e), seq_len), "label": e.score} for e in examples]


def encode_re(tokenizer: Any, examples: Sequence[ReExample], seq_len: int) -> list[dict[str, Any]]:
    """`{input_ids, label}` rows of entity-marked sentences."""
    return [
        {"input_ids": encode_for_classifier(tokenizer, mark_entities(e), seq_len), "label": e.label} for e in examples
    ]


def offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of `text` (no special tokens) and each token's character span; needs a fast tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            "KLUE NER and MRC align characters to tokens through a fast tokenizer's offsets; "
            "save the tokenizer as tokenizer.json (kolm tokenizers are)"
        )
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _prefix(tokenizer: Any) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def _first_char(text: str, span: tuple[int, int]) -> int:
    """The first non-space character of a token's span (byte-level tokens carry their leading space)."""
    start, end = span
    while start < end - 1 and text[start].isspace():
        start += 1
    return start


def encode_ner(
    tokenizer: Any, sentences: Sequence[NerSentence], tags: Sequence[str], seq_len: int
) -> list[dict[str, Any]]:
    """`{input_ids, labels, spans}` rows: one tag index per token (BOS: -100), cut to `seq_len` tokens."""
    index = {t: i for i, t in enumerate(tags)}
    rows = []
    for s in sentences:
        ids, spans = offsets(tokenizer, s.chars)
        pre = _prefix(tokenizer)
        keep = max(0, seq_len - len(pre))
        ids, spans = ids[:keep], spans[:keep]
        labels = [index[s.tags[_first_char(s.chars, sp)]] if sp[1] > sp[0] else -100 for sp in spans]
        rows.append({"input_ids": pre + ids, "labels": [-100] * len(pre) + labels, "spans": [None] * len(pre) + spans})
    return rows


def token_tags_to_chars(text: str, spans: Sequence[Any], token_tags: Sequence[str]) -> list[str]:
    """Character tags from token tags: a token's first character takes its tag, the rest continue it (I-) or O.

    Characters no token covers (cut off by the length limit) are O. Where
    byte-level tokens share a character, the first token to reach it decides.
    """
    out = ["O"] * len(text)
    seen = [False] * len(text)
    for span, tag in zip(spans, token_tags):
        if span is None or span[1] <= span[0]:
            continue
        first = _first_char(text, span)
        for c in range(first, span[1]):
            if seen[c]:
                continue
            seen[c] = True
            if c == first or tag == "O":
                out[c] = tag
            else:
                out[c] = "I-" + tag.split("-", 1)[1]
    return out


@dataclass
class MrcWindow:
    """One window of a question's context: the model row and what maps its tokens back to characters."""

    example: int  # index of the example it came from
    input_ids: list[int]
    spans: list[tuple[int, int] | None]  # character span in the context of each token; None outside the context
    start: int  # gold start token (the final EOS for "no answer")
    end: int  # gold end token


def encode_mrc(tokenizer: Any, examples: Sequence[MrcExample], seq_len: int, doc_stride: int) -> list[MrcWindow]:
    """Every window of every example, `question + context window + EOS` of at most `seq_len` tokens."""
    if tokenizer.eos_token_id is None:
        raise DataError("KLUE-MRC needs a tokenizer with an EOS token: it is the 'no answer' position")
    out = []
    for n, ex in enumerate(examples):
        q_ids = _prefix(tokenizer) + tokenizer.encode(f"질문: {ex.question}\n본문: ", add_special_tokens=False)
        q_ids = q_ids[: max(1, seq_len // 2)]  # an overlong question leaves half the window to the context
        c_ids, c_spans = offsets(tokenizer, ex.context)
        room = seq_len - len(q_ids) - 1
        if room < 1:
            raise DataError(f"finetune.seq_len={seq_len} leaves no room for the context; raise it")
        step = max(1, room - min(doc_stride, room // 2))  # the overlap never exceeds half a window
        gold = None  # the answer's first and last token in the whole context
        if ex.answers:
            text, a0 = ex.answers[0]
            a1 = a0 + len(text)
            inside = [k for k, sp in enumerate(c_spans) if sp[0] < a1 and sp[1] > a0]
            gold = (inside[0], inside[-1]) if inside else None
        first = 0
        while True:
            window = slice(first, first + room)
            ids = q_ids + c_ids[window] + [tokenizer.eos_token_id]
            spans: list[tuple[int, int] | None] = [None] * len(q_ids) + list(c_spans[window]) + [None]
            start = end = len(ids) - 1
            if gold is not None and first <= gold[0] and gold[1] < first + room:
                start, end = len(q_ids) + gold[0] - first, len(q_ids) + gold[1] - first
            out.append(MrcWindow(n, ids, spans, start, end))
            if first + room >= len(c_ids):
                break
            first += step
    return out


def collate_tokens(rows: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """A right-padded `{input_ids, attention_mask, labels}` batch of token-tagged rows (labels padded with -100)."""
    ids, mask = pad_rows([r["input_ids"] for r in rows], pad_id, left=False)
    labels, _ = pad_rows([r["labels"] for r in rows], pad_id, left=False, fill=-100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_spans(windows: Sequence[MrcWindow], pad_id: int) -> dict[str, Any]:
    """A right-padded `{input_ids, attention_mask, start_positions, end_positions}` batch of MRC windows."""
    import torch

    ids, mask = pad_rows([w.input_ids for w in windows], pad_id, left=False)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "start_positions": torch.tensor([w.start for w in windows]),
        "end_positions": torch.tensor([w.end for w in windows]),
    }


def best_answer(
    context: str,
    windows: Sequence[MrcWindow],
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    max_answer_tokens: int,
) -> str:
    """The answer text of one question from its windows' logits; "" when "no answer" scores higher.

    The best span (start <= end, both in the context, at most
    `max_answer_tokens` long) over all windows competes with the lowest
    "no answer" score of any window (SQuAD 2.0's rule).
    """
    best, best_span = float("-inf"), None
    null = float("inf")
    for w, s, e in zip(windows, start_logits, end_logits):
        n = len(w.input_ids)
        null = min(null, float(s[n - 1]) + float(e[n - 1]))
        ctx = [i for i in range(n) if w.spans[i] is not None and w.spans[i][1] > w.spans[i][0]]
        for a, i in enumerate(ctx):
            for j in ctx[a : a + max_answer_tokens]:
                score = float(s[i]) + float(e[j])
                if score > best:
                    best, best_span = score, (w.spans[i][0], w.spans[j][1])
    if best_span is None or null > best:
        return ""
    return context[best_span[0] : best_span[1]].strip()
