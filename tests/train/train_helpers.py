"""Builders for the pretraining tests: fake Korean texts, a tiny tokenizer, a curated-data folder, overrides."""

from __future__ import annotations

import random
from pathlib import Path

_WORDS = (
    "오늘 날씨가 맑고 바람이 시원하다 영화가 정말 재미있었다 배우의 연기가 훌륭했다 이야기는 조금 지루했지만 "
    "음악이 아름다웠다 서울에서 부산까지 기차를 탔다 친구와 함께 점심을 먹었다 도서관에서 책을 읽었다 "
    "인공지능 기술이 빠르게 발전하고 있다 한국어 문장을 학습한다"
).split()


def korean_texts(n: int, seed: int = 0) -> list[str]:
    """Deterministic pseudo-Korean documents."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 30))) + "." for _ in range(n)]


def make_tokenizer(out: Path, vocab_size: int = 300) -> Path:
    """Train a byte-level BPE on the fake corpus and save it as an HF tokenizer dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>", "<unk>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(korean_texts(300), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return out


def make_data(out: Path, n_train: int = 400, n_val: int = 40) -> Path:
    """A curated-data folder in the data stage's format (Parquet parts with id/text/source)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split, n, seed in (("train", n_train, 1), ("validation", n_val, 2)):
        (out / split).mkdir(parents=True, exist_ok=True)
        texts = korean_texts(n, seed)
        table = pa.table({"id": [f"{split}-{i}" for i in range(n)], "text": texts, "source": ["test"] * n})
        pq.write_table(table, out / split / "part-00000.parquet")
    return out


def tiny_overrides(**extra) -> list[str]:
    """Overrides that shrink the tiny preset to a few seconds."""
    base = {
        "device": "cpu",
        "model.d_model": 32,
        "model.n_layers": 2,
        "model.gpt.n_heads": 2,
        "model.gpt.n_kv_heads": 1,
        "model.gpt.ffn_dim": 64,
        "model.max_seq_len": 64,
        "pretrain.seq_len": 32,
        "pretrain.batch_size": 4,
        "pretrain.max_steps": 8,
        "pretrain.warmup_steps": 2,
        "pretrain.log_every": 1,
        "pretrain.eval_every": 4,
        "pretrain.eval_batches": 2,
        "pretrain.save_every": 4,
        "pretrain.sample_max_new_tokens": 4,
        "pretrain.sample_prompts": "[오늘]",
        "pretrain.precision": "fp32",
        "pretrain.compile": False,  # the tiny preset compiles; a few test steps do not pay for it
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


# Tiny shapes of each architecture (d_model 32, two layers, from tiny_overrides).
ARCH_SHAPES = {
    "mamba2": ["model.mamba2.d_state=8", "model.mamba2.head_dim=8", "model.mamba2.chunk_size=8"],
    "rwkv7": [
        "model.rwkv7.head_size=8",
        "model.rwkv7.ffn_dim=64",
        "model.rwkv7.decay_rank=8",
        "model.rwkv7.a_rank=8",
        "model.rwkv7.v_rank=4",
        "model.rwkv7.gate_rank=8",
        "model.rwkv7.chunk_size=8",
    ],
    "deepseek": [
        "model.deepseek.n_heads=2",
        "model.deepseek.kv_lora_rank=16",
        "model.deepseek.qk_nope_head_dim=8",
        "model.deepseek.qk_rope_head_dim=4",
        "model.deepseek.v_head_dim=8",
        "model.deepseek.ffn_dim=48",
        "model.deepseek.moe_ffn_dim=16",
        "model.deepseek.n_routed_experts=4",
    ],
}


def arch_overrides(arch: str, **extra) -> list[str]:
    """`tiny_overrides` for another architecture: its tiny shape instead of the gpt section."""
    base = [o for o in tiny_overrides(**extra) if not o.startswith("model.gpt.")]
    return [*base, f"model.arch={arch}", *ARCH_SHAPES[arch]]  # the preset's model.gpt stays behind by itself
