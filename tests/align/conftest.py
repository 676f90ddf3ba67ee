"""Tiny models built in-process for the alignment tests: a causal LM, a sentiment-style classifier, an easy reward."""

from __future__ import annotations

import json

import pytest

from kolm.data.sources import assets_dir

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIALS = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]


def build_tokenizer(texts, vocab_size=400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _texts(n=200):
    lines = (assets_dir() / "reviews_train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line)["text"] for line in lines]


def _model_config(tok, **kw):
    from kolm.model_config import GPTConfig, ModelConfig

    return ModelConfig(d_model=32, n_layers=2, max_seq_len=96, gpt=GPTConfig(n_heads=4, n_kv_heads=2, ffn_dim=64), **kw)


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
