"""Examples into model batches: classifier and chat encodings, padding, and the pad id.

One implementation for fine-tuning (training batches, validation and test
scores), evaluation (classifier predictions, few-shot scoring) and alignment,
so that a classifier is scored on exactly the tokens it was trained on.

Padding side: classification pads on the left, so the last position of every
row is its pooled token (EOS, which has seen the whole text). Language-model
rows (SFT, few-shot scoring) pad on the right: every row's positions then
start at 0, and with the attention mask a padded row scores exactly as it
would alone. torch is imported only when tensors are built.

Training batches by length (`batch_plan(..., by_length=True)`): short reviews
and long ones drawn into the same batch make every row as long as the
longest, and on a CPU the padding is computed like real tokens. Rows are
shuffled, sorted by length inside windows of `window` batches, cut into
batches, and the batches shuffled again: each batch holds rows of similar
length while the order of lengths across steps stays random (the grouping of
Hugging Face Trainer's `group_by_length`, written here for our row lists).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from kolm.errors import DataError

__all__ = [
    "pad_token_id",
    "encode_for_classifier",
    "encode_classification",
    "encode_sft",
    "pad_rows",
    "collate",
    "batch_plan",
    "padding_share",
]


def pad_token_id(tokenizer: Any) -> int:
    """The id that fills padded positions: the tokenizer's pad token, else EOS, else 0."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id or 0)


def encode_for_classifier(tokenizer: Any, text: str, max_length: int) -> list[int]:
    """Token ids of `text` (no special tokens, cut to `max_length - 1`) followed by EOS, the pooled token."""
    ids = tokenizer.encode(text, add_special_tokens=False)[: max_length - 1]
    return ids + [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


def encode_classification(tokenizer: Any, examples: Sequence[tuple[str, int]], seq_len: int) -> list[dict[str, Any]]:
    """`{input_ids, label}` per (text, label index) example, encoded as `encode_for_classifier`."""
    return [{"input_ids": encode_for_classifier(tokenizer, text, seq_len), "label": label} for text, label in examples]


def encode_sft(tokenizer: Any, chats: Sequence[list[dict[str, str]]], seq_len: int) -> list[dict[str, Any]]:
    """`{input_ids, labels}` per chat, with the loss on the final assistant answer only (prompt labels are -100).

    The chat is rendered with the tokenizer's chat template twice, with and
    without the answer, so the answer's tokens are exactly what follows the
    generation prompt. Chats whose answer is cut off entirely by `seq_len` are
    left out: they would teach nothing.
    """
    out = []
    for chat in chats:
        full = tokenizer.apply_chat_template(chat, tokenize=False)
        prompt = tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)
        if not full.startswith(prompt):
            raise DataError(
                "the tokenizer's chat template does not render the prompt as a prefix of the chat; "
                "fix the template in tokenizer_config.json"
            )
        p_ids = tokenizer.encode(prompt, add_special_tokens=False)
        a_ids = tokenizer.encode(full[len(prompt) :], add_special_tokens=False)
        ids = (p_ids + a_ids)[:seq_len]
        labels = ([-100] * len(p_ids) + a_ids)[:seq_len]
        if all(v == -100 for v in labels):
            continue
        out.append({"input_ids": ids, "labels": labels})
    return out


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool, fill: int | None = None) -> tuple[Any, Any]:
    """(values, attention mask), both (B, T) int64, of rows padded to the longest with `fill` (default `pad_id`)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id if fill is None else fill, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(list(r), dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def collate(rows: Sequence[dict[str, Any]], pad_id: int, *, left: bool) -> dict[str, Any]:
    """A padded batch `{input_ids, attention_mask, labels}` of encoded examples.

    Rows with `labels` (token labels, SFT) pad them with -100 like their ids;
    rows with `label` (classification) give a (B,) label vector.
    """
    import torch

    ids, mask = pad_rows([r["input_ids"] for r in rows], pad_id, left=left)
    if "labels" in rows[0]:
        labels, _ = pad_rows([r["labels"] for r in rows], pad_id, left=left, fill=-100)
    else:
        labels = torch.tensor([r["label"] for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_plan(
    lengths: Sequence[int], batch_size: int, rng: random.Random, *, by_length: bool, window: int = 50
) -> list[list[int]]:
    """One epoch of training batches as lists of row indices (the last partial batch dropped).

    Random order; with `by_length`, rows of similar length share a batch (see the module docstring).
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if by_length:
        span = batch_size * window
        order = [i for s in range(0, len(order), span) for i in sorted(order[s : s + span], key=lengths.__getitem__)]
    stop = len(order) - batch_size + 1 if len(order) >= batch_size else 1
    batches = [order[i : i + batch_size] for i in range(0, stop, batch_size)]
    if by_length:
        rng.shuffle(batches)
    return batches


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of padding among the positions the model computes for `batches` (each row padded to its longest)."""
    computed = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 1.0 - real / computed if computed else 0.0
