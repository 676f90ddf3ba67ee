"""Continuous batching (kolm.infer.batch) against single-prompt generation, the slot cache, and streamed text."""

from __future__ import annotations

import pytest
import torch

from kolm.infer.batch import BatchEngine
from kolm.infer.engine import Engine
from kolm.infer.sampling import SamplingParams
from kolm.infer.slots import SlotKVCache
from kolm.infer.text import TextStream

PROMPTS = ["오늘은", "서울의 봄은 짧지만 꽃이", "이 영화는", "도서관에서 책을 빌려 읽었다. 저녁에는", "한국어"]


@pytest.fixture(scope="module")
def lm(model_dir):
    from kolm.models.loading import load_model

    return load_model(model_dir)


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_new_tokens=30, temperature=0),
        SamplingParams(max_new_tokens=30, temperature=0, repetition_penalty=1.3),
        SamplingParams(max_new_tokens=30, temperature=0.9, top_k=20, top_p=0.9, seed=5, repetition_penalty=1.1),
    ],
    ids=["greedy", "greedy-penalty", "seeded-sampling"],
)
def test_batched_rows_joining_at_different_times_match_single_prompts(lm, params):
    model, tok = lm
    single = [Engine(model, tok).generate([p], params)[0] for p in PROMPTS]
    engine = BatchEngine(model, tok, max_batch=2).start()  # 5 prompts through 2 rows: rows join and leave
    try:
        batched = engine.generate([engine.encode(p) for p in PROMPTS], params)
    finally:
        engine.stop()
    assert [b.token_ids for b in batched] == [s.token_ids for s in single]
    assert [b.text for b in batched] == [s.text for s in single]
    assert [b.finish_reason for b in batched] == [s.finish_reason for s in single]


def test_cancel_frees_the_row_and_stop_fails_pending(lm):
    model, tok = lm
    engine = BatchEngine(model, tok, max_batch=1, max_queue=4).start()
    with engine.paused():
        first = engine.submit(engine.encode("오늘은"), SamplingParams(max_new_tokens=40, temperature=0))
        second = engine.submit(engine.encode("서울의"), SamplingParams(max_new_tokens=3, temperature=0))
        first.cancel()
    events = list(second.events(timeout=30))
    assert events[-1].kind == "done" and events[-1].completion_tokens <= 3
    assert first.finish_reason == "cancelled" and engine.stats()["cancelled"] == 1
    with engine.paused():
        third = engine.submit(engine.encode("한국어"), SamplingParams(max_new_tokens=3))
        engine.stop()
    assert list(third.events(timeout=5))[-1].kind == "error"


def test_slot_cache_reads_each_row_at_its_own_length():
    cache = SlotKVCache(n_layers=1, slots=3, n_kv_heads=1, head_dim=2, max_len=8)
    for n in (2, 4):
        one = type("One", (), {})()
        one.k = torch.full((1, 1, 1, 8, 2), float(n))
        one.v = one.k.clone()
        one.get_seq_length = lambda n=n: n
        cache.insert(one)
    pos, mask = cache.begin_step()
    assert pos.tolist() == [[2], [4]] and mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    k, _ = cache.update(torch.full((2, 1, 1, 2), 9.0), torch.zeros(2, 1, 1, 2), 0)  # (B, KV, width, D)
    assert k.shape == (2, 1, 5, 2) and k[0, 0, 2, 0] == 9 and k[1, 0, 4, 0] == 9 and k[0, 0, 3, 0] == 0
    cache.end_step()
    cache.remove(0)  # the last row moves into row 0
    assert cache.rows == 1 and cache.lengths == [5] and cache.k[0, 0, 0, 4, 0] == 9


def test_text_stream_holds_back_half_syllables_and_stop_strings(tokenizer):
    ids = tokenizer("서울의 봄은 짧지만 꽃이 많이 핀다.", add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer, stops=["꽃이"])
    pieces = [stream.push(i) for i in ids]
    pieces.append(stream.finish())
    assert "".join(pieces) == "서울의 봄은 짧지만 " and stream.stopped
    assert all("\ufffd" not in p for p in pieces)
    plain = TextStream(tokenizer)
    assert "".join([plain.push(i) for i in ids] + [plain.finish()]) == tokenizer.decode(ids)
