"""Tiny models built in-process for the alignment tests: a causal LM, a sentiment-style classifier, an easy reward."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignkit import _model_config, _texts, build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A randomly initialised tiny causal LM (about 30K parameters) saved with its tokenizer."""
    import torch

    from kolm.models.registry import build_causal_lm

    tok = build_tokenizer(_texts())
    torch.manual_seed(0)
    model = build_causal_lm(
        _model_config(tok),
        vocab_size=len(tok),
        bos_id=tok.bos_token_id,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
    )
    out = tmp_path_factory.mktemp("lm")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_classifier(tiny_lm, tmp_path_factory):
    """A two-label classifier (부정/긍정) over the tiny LM's backbone, as `kolm finetune` would save it."""
    from kolm.models.loading import load_model, write_task_info

    model, tok = load_model(tiny_lm, task="classify", labels=["부정", "긍정"])
    out = tmp_path_factory.mktemp("clf")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    write_task_info(out, "classify", "full", ["부정", "긍정"], None)
    return out


def easy_score(prompts, completions, **kwargs):
    """A reward any policy can learn quickly: the number of spaces in the response (word count, in effect)."""
    return [float(c.count(" ")) for c in completions]


@pytest.fixture
def easy_reward():
    from kolm.align.scoring import Reward

    class Easy(Reward):
        name = "easy"

        def _score(self, prompts, completions):
            return easy_score(prompts, completions)

    return Easy()
