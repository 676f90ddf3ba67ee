"""A tiny base model directory (model + tokenizer with a chat template) built in-process."""

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


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A randomly initialised tiny causal LM saved as an HF model dir with its tokenizer."""
    import torch

    import kolm.models.registry  # noqa: F401
    from kolm.model_config import GPTConfig, ModelConfig
    from kolm.models.registry import build_causal_lm

    root = assets_dir()
    texts = [
        json.loads(line)["text"]
        for line in (root / "reviews_train.jsonl").read_text(encoding="utf-8").splitlines()[:200]
    ]
    tok = build_tokenizer(texts)
    torch.manual_seed(0)
    model = build_causal_lm(
        ModelConfig(d_model=32, n_layers=2, max_seq_len=128, gpt=GPTConfig(n_heads=4, n_kv_heads=2, ffn_dim=64)),
        vocab_size=len(tok),
        bos_id=tok.bos_token_id,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
    )
    out = tmp_path_factory.mktemp("base")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
