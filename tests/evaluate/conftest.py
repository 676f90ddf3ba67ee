"""Tiny in-process tokenizers and models for the evaluation tests (nothing downloaded)."""

from __future__ import annotations

import pytest

WORDS = (
    "리뷰 감정 : 긍정 부정 좋다 싫다 최고 별로 영화 배우 연기 이야기 정말 너무 재미 없다 있다 . , ? "
    "다음은 와 그 또는 입니다 N/A 오늘 날씨 맑다 서울 한국 수도 질문 답 단계별로 차근차근 생각해 봅시다 "
    "당신은 친절하고 정확한 한국어 선생님 다음 질문에 답하세요 에서 의 는 은 이 가 을 를"
).split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_tokenizer():
    """A word-level tokenizer over a fixed Korean vocabulary: each listed word is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(dict.fromkeys(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def build_llama(vocab_size: int, max_positions: int = 64, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=max_positions, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(tiny_tokenizer):
    return build_llama(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer, tiny_lm):
    """An HF model dir (weights + tokenizer) like pretrain/final."""
    path = tmp_path_factory.mktemp("model") / "final"
    tiny_lm.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path
