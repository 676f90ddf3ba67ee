"""Prompts for rollouts and for the before/after measurement: the first words of reviews, or a prompt file.

The sentiment demo (the Korean counterpart of "positive IMDb continuations")
starts every response from the first one to three words (어절) of a review,
so the continuation, not the prompt, decides the sentiment. Training prompts
come from the training reviews, measurement prompts from held-out ones.
"""

from __future__ import annotations

import random
from pathlib import Path

from kolm.data.tasks import assets_dir, read_records, read_texts
from kolm.errors import DataError

__all__ = ["review_prompt", "load_prompts"]


def review_prompt(text: str, n_words: int) -> str:
    """The first `n_words` words of `text`, with a trailing space so the model continues with a new word."""
    words = text.split()
    return " ".join(words[:n_words]) + " " if words else ""


def _cut(texts: list[str], min_words: int, max_words: int, rng: random.Random) -> list[str]:
    prompts = []
    for t in texts:
        words = t.split()
        if len(words) < 2:
            continue  # a one-word review leaves nothing to continue
        n = rng.randint(min_words, min(max_words, len(words) - 1))
        prompts.append(review_prompt(t, n))
    return prompts


def load_prompts(
    path: str | None,
    field: str = "text",
    min_words: int = 1,
    max_words: int = 3,
    n_eval: int = 64,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """(training prompts, held-out measurement prompts).

    Default: review beginnings from the embedded `reviews_train.jsonl` and
    `reviews_test.jsonl`. A file with a `prompt` column is used as written;
    otherwise the `field` column (NSMC: document) is cut to its first words.
    `n_eval` prompts are held out of a file for the measurement.
    """
    rng = random.Random(seed)
    if path is None:
        root = assets_dir()
        train = [r["text"] for r in read_records(root / "reviews_train.jsonl")]
        test = [r["text"] for r in read_records(root / "reviews_test.jsonl")]
        tr, ev = _cut(train, min_words, max_words, rng), _cut(test, min_words, max_words, rng)
        rng.shuffle(tr)
        rng.shuffle(ev)
        return tr, ev[:n_eval]
    p = Path(path)
    rows = [] if p.suffix == ".txt" else read_records(p)
    if rows and "prompt" in rows[0]:
        prompts = [str(r["prompt"]) for r in rows if str(r.get("prompt") or "").strip()]
    else:
        texts = read_texts(p, field)
        prompts = _cut(texts, min_words, max_words, rng)
    if len(prompts) < 2:
        raise DataError(f"{path}: fewer than 2 usable prompts; give a file with a 'prompt' or '{field}' column")
    rng.shuffle(prompts)
    n = min(n_eval, max(1, len(prompts) // 5))
    return prompts[n:], prompts[:n]
