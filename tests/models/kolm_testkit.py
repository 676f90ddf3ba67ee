"""Test kit: tiny KolmGPT models, their Llama twins and a tiny Korean byte-level BPE tokenizer, built in-process.

Imported by the conftest files of tests/models and tests/infer."""

from __future__ import annotations

import pytest

KOREAN = [
    "오늘은 날씨가 맑고 바람이 시원하다.",
    "서울의 봄은 짧지만 꽃이 많이 핀다.",
    "이 영화는 정말 재미있었고 배우들의 연기가 좋았다.",
    "한국어 언어 모델을 처음부터 만들어 봅시다.",
    "도서관에서 책을 빌려 읽었다.",
    "저녁에는 가족과 함께 김치찌개를 먹었다.",
]
SPECIALS = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer(vocab_size: int = 300):
    """Byte-level BPE trained on a few Korean sentences, with kolm's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(KOREAN * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_config(vocab_size: int = 300, **overrides):
    from kolm.models.gpt import KolmGPTConfig

    kw = dict(
        vocab_size=vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=64,
        max_seq_len=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    kw.update(overrides)
    return KolmGPTConfig(**kw)


def make_model(seed: int = 0, sharpen: float = 30.0, **overrides):
    """A random tiny KolmGPT in eval mode (untied head unless overridden).

    A random init is close to uniform, so greedy decoding would hinge on
    float noise; scaling the untied output head makes choices decisive.
    """
    import torch

    import kolm.models.registry  # noqa: F401
    from kolm.models.gpt import KolmGPTForCausalLM

    overrides.setdefault("tie_word_embeddings", False)
    torch.manual_seed(seed)
    model = KolmGPTForCausalLM(make_config(**overrides)).eval()
    if not model.config.tie_word_embeddings:
        with torch.no_grad():
            model.lm_head.weight.mul_(sharpen)
    return model


def llama_twin(model):
    """A transformers LlamaForCausalLM with the same shape and weights as a KolmGPT model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from kolm.export.hf_llama import llama_config

    hf = LlamaForCausalLM(LlamaConfig(**llama_config(model.config))).eval()
    hf.load_state_dict(model.state_dict())
    return hf


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer):
    """A saved tiny KolmGPT model dir (safetensors) with its tokenizer."""
    model = make_model(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    out = tmp_path_factory.mktemp("kolm_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
