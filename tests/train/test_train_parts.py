"""Unit checks of the reusable pieces: schedules, parameter groups, packing and the window sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kolm.train.metrics import bits_per_char
from kolm.train.optim import build_adamw, param_groups
from kolm.train.pack import PackedTokens, WindowSampler, pack_splits
from kolm.train.schedule import warmup_cosine, warmup_stable_decay


def test_schedules():
    f = warmup_cosine(10, 100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(100) == pytest.approx(0.1) and 0.1 < f(55) < 1.0
    g = warmup_stable_decay(10, 100, 0.0, 0.2)
    assert g(50) == 1.0 and g(79) == 1.0 and g(90) == pytest.approx(0.5) and g(100) == pytest.approx(0.0)


def test_param_groups_exempt_norms_biases_embeddings():
    model = torch.nn.ModuleDict(
        {"emb": torch.nn.Embedding(10, 4), "lin": torch.nn.Linear(4, 4), "norm": torch.nn.LayerNorm(4)}
    )
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 4  # embedding, bias, norm weight and bias
    opt = build_adamw(model, 1e-3)
    assert opt.defaults.get("fused") is True  # CPU has fused AdamW in torch >= 2.4


class _Tok:
    """Character-level stand-in for a tokenizer (ids = code points mod 500)."""

    def get_vocab_size(self):
        return 500

    def encode_batch(self, texts, add_special_tokens=False):
        class E:
            def __init__(self, ids):
                self.ids = ids

        return [E([ord(c) % 500 for c in t]) for t in texts]


def test_pack_roundtrip_and_noop(tmp_path):
    texts = ["가나다라", "마바사", "아자차카타파하"]
    index, packed = pack_splits({"train": texts}, _Tok(), tmp_path, eos_id=1, fingerprint="a", shard_tokens=1000)
    assert packed and index["dtype"] == "uint16"
    raw = np.fromfile(tmp_path / "train-00000.bin", dtype=np.uint16)
    assert raw.tolist() == [ord(c) % 500 for c in "가나다라"] + [1] + [ord(c) % 500 for c in "마바사"] + [1] + [
        ord(c) % 500 for c in "아자차카타파하"
    ] + [1]
    assert index["splits"]["train"]["chars"] == 4 + 3 + 7 + 3
    _, packed_again = pack_splits({"train": lambda: iter(["unused"])}, _Tok(), tmp_path, 1, "a")
    assert not packed_again  # same fingerprint: nothing re-read or re-written


def test_sampler_shards_match_one_process_and_resume(tmp_path):
    pack_splits({"train": ["가" * 50 + str(i) for i in range(20)]}, _Tok(), tmp_path, 1, "f")
    data = PackedTokens(tmp_path, "train", seq_len=8)
    one = WindowSampler(data, 4, seed=3)
    r0, r1 = WindowSampler(data, 2, seed=3, rank=0, world_size=2), WindowSampler(data, 2, seed=3, rank=1, world_size=2)
    for _ in range(5):
        both = torch.cat([next(r0)["input_ids"], next(r1)["input_ids"]])
        assert torch.equal(next(one)["input_ids"], both)
    state = one.state_dict()
    expected = next(one)["input_ids"]
    again = WindowSampler(data, 4, seed=3)
    again.load_state_dict(state)
    assert torch.equal(next(again)["input_ids"], expected)


def test_bits_per_char():
    assert bits_per_char(math.log(2), 10, 5) == pytest.approx(2.0)


def test_activation_checkpointing_keeps_the_gradients():
    from transformers import LlamaConfig, LlamaForCausalLM

    from kolm.train.stage import enable_activation_checkpointing

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=16,
    )
    a = LlamaForCausalLM(cfg)
    b = LlamaForCausalLM(cfg)
    b.load_state_dict(a.state_dict())
    enable_activation_checkpointing(b)
    b.train()
    ids = torch.randint(0, 50, (2, 8))
    for m in (a, b):
        m(input_ids=ids, labels=ids).loss.backward()
    ga = a.model.layers[0].mlp.up_proj.weight.grad
    gb = dict(b.named_parameters())
    gb = next(p.grad for n, p in gb.items() if n.endswith("layers.0.mlp.up_proj.weight"))
    assert torch.allclose(ga, gb, atol=1e-6)


def _tiny_gpt():
    from kolm.models.gpt import KolmGPTConfig, KolmGPTForCausalLM

    torch.manual_seed(0)
    cfg = KolmGPTConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32, max_seq_len=16)
    return KolmGPTForCausalLM(cfg)


def _token_batches():
    g = torch.Generator().manual_seed(0)
    while True:
        ids = torch.randint(0, 64, (2, 8), generator=g)
        yield {"input_ids": ids, "labels": ids}


def test_loss_only_trains_like_full_logits():
    # LoopSettings(loss_only=True) asks KolmGPT for the chunked loss alone; the run is the same run.
    from kolm.train.loop import LoopSettings, train

    finals = []
    for loss_only in (False, True):
        model = _tiny_gpt()
        state = train(
            model,
            _token_batches(),
            build_adamw(model, 1e-2),
            settings=LoopSettings(max_steps=3, resume="never", loss_only=loss_only),
        )
        finals.append((state.loss, model.lm_head.weight.detach().clone()))
    assert finals[0][0] == pytest.approx(finals[1][0], abs=1e-5)
    torch.testing.assert_close(finals[0][1], finals[1][1], atol=1e-5, rtol=0)


def test_compile_unavailable_trains_eagerly(monkeypatch):
    # pretrain.compile on a machine where torch.compile cannot work: a log line, then eager training.
    from kolm.train.loop import LoopSettings, train

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", no_compiler)
    model, logs = _tiny_gpt(), []
    state = train(
        model,
        _token_batches(),
        build_adamw(model, 1e-2),
        log=logs.append,
        settings=LoopSettings(max_steps=2, resume="never", compile=True, loss_only=True),
    )
    assert state.step == 2 and math.isfinite(state.loss)
    assert any("training eagerly" in line for line in logs)
