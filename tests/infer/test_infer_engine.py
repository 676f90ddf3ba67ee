"""The generation engine: cache vs recompute, batching, agreement with HF generate(), sampling, stops, streaming."""

from __future__ import annotations

import pytest
import torch
from kolm_testkit import llama_twin, make_model

from kolm.infer.engine import Completion, Engine
from kolm.infer.sampling import SamplingParams, apply_repetition_penalty, filter_top_k, filter_top_p

GREEDY = SamplingParams(max_new_tokens=12, temperature=0, eos_token_ids=[])


@pytest.fixture(scope="module")
def model():
    return make_model()


def recompute_greedy(model, ids: list[int], n: int) -> list[int]:
    """Greedy decoding by re-running the whole sequence every step (no cache)."""
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    return seq[len(ids) :]


def test_cached_decode_equals_full_recompute(model):
    prompt = [1, 17, 33, 250, 9]
    out = Engine(model).generate([prompt], GREEDY)[0]
    assert out.token_ids == recompute_greedy(model, prompt, 12)
    assert out.finish_reason == "length" and out.prompt_tokens == 5


def test_batched_equals_unbatched_with_left_padding(model):
    prompts = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 40], [1, 200, 100, 50]]
    engine = Engine(model)
    batched = engine.generate(prompts, GREEDY)
    for p, b in zip(prompts, batched):
        assert b.token_ids == engine.generate([p], GREEDY)[0].token_ids


def test_engine_agrees_with_hf_generate(model):
    prompts = [[1, 17, 33, 250, 9], [1, 3]]
    engine = Engine(model)
    hf = llama_twin(model)
    for p in prompts:
        x = torch.tensor([p])
        kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
        ours_hf = model.generate(x, **kw)[0, len(p) :].tolist()  # HF generate() on our model (DynamicCache path)
        llama = hf.generate(x, **kw)[0, len(p) :].tolist()
        assert engine.generate([p], GREEDY)[0].token_ids == ours_hf == llama
    # HF generate() with left padding on our model, too.
    batch = torch.tensor([[0, 0, 0, 1, 3], [1, 17, 33, 250, 9]])
    mask = (batch != 0).long()
    out = model.generate(
        batch, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None
    )
    assert out[0, 5:].tolist() == engine.generate([[1, 3]], GREEDY)[0].token_ids[:8]


def test_engine_runs_plain_hf_models_through_dynamic_cache(model):
    hf = llama_twin(model)
    prompt = [1, 17, 33, 250, 9]
    assert Engine(hf).generate([prompt], GREEDY)[0].token_ids == Engine(model).generate([prompt], GREEDY)[0].token_ids


def test_eos_stops_a_row_and_others_continue(model):
    engine = Engine(model)
    free = engine.generate([[1, 17, 33]], GREEDY)[0].token_ids
    eos = free[3]
    params = SamplingParams(max_new_tokens=12, temperature=0, eos_token_ids=[eos])
    a, b = engine.generate([[1, 17, 33], [1, 200, 100, 50]], params)
    assert a.finish_reason == "eos" and a.token_ids == free[: free.index(eos)]
    # The other row continues exactly as it does alone (greedy), well past the step where the first stopped.
    solo = engine.generate([[1, 200, 100, 50]], params)[0]
    assert b.token_ids == solo.token_ids and b.finish_reason == solo.finish_reason
    assert len(b.token_ids) > len(a.token_ids) + 1
    # The same holds with the rows swapped (the stopped row is not always row 0).
    b2, a2 = engine.generate([[1, 200, 100, 50], [1, 17, 33]], params)
    assert (a2.token_ids, a2.finish_reason) == (a.token_ids, "eos") and b2.token_ids == solo.token_ids


def test_sampling_is_seeded_and_top_k_1_is_greedy(model):
    engine = Engine(model)
    p = [1, 17, 33]
    s1 = engine.generate([p], SamplingParams(max_new_tokens=10, temperature=1.0, seed=3, eos_token_ids=[]))[0]
    s2 = engine.generate([p], SamplingParams(max_new_tokens=10, temperature=1.0, seed=3, eos_token_ids=[]))[0]
    assert s1.token_ids == s2.token_ids
    k1 = engine.generate([p], SamplingParams(max_new_tokens=10, temperature=0.7, top_k=1, seed=5, eos_token_ids=[]))[0]
    assert (
        k1.token_ids
        == engine.generate([p], SamplingParams(max_new_tokens=10, temperature=0, eos_token_ids=[]))[0].token_ids
    )


def test_filters_and_penalty():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    assert torch.isinf(filter_top_k(logits, 2)[0, 2:]).all() and torch.isfinite(filter_top_k(logits, 2)[0, :2]).all()
    kept = torch.isfinite(filter_top_p(logits, 0.5))[0].tolist()
    assert kept == [True, False, False, False]  # the top token alone holds > 50%
    assert torch.isfinite(filter_top_p(logits, 0.999)).sum() == 4
    seen = torch.tensor([[True, False, False, True]])
    pen = apply_repetition_penalty(logits, seen, 2.0)
    assert pen.tolist() == [[1.0, 1.0, 0.5, -2.0]]
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)


def test_repetition_penalty_matches_hf(model):
    p = [1, 17, 33, 250, 9]
    ours = Engine(model).generate(
        [p], SamplingParams(max_new_tokens=10, temperature=0, repetition_penalty=1.8, eos_token_ids=[])
    )[0]
    hf = model.generate(
        torch.tensor([p]), max_new_tokens=10, do_sample=False, repetition_penalty=1.8, pad_token_id=0, eos_token_id=None
    )
    assert ours.token_ids == hf[0, len(p) :].tolist()


def test_stop_strings_and_streaming_text(model_dir, tokenizer):
    from kolm.models.loading import load_model

    engine = Engine(load_model(model_dir)[0], tokenizer)
    free = engine.generate(["오늘은 날씨가"], SamplingParams(max_new_tokens=16, temperature=0, eos_token_ids=[]))[0]
    assert free.text
    stop = free.text[3:5]
    cut = engine.generate(
        ["오늘은 날씨가"], SamplingParams(max_new_tokens=16, temperature=0, stop=[stop], eos_token_ids=[])
    )[0]
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.index(stop)]
    done = Completion(token_ids=[])
    pieces = list(
        engine.stream(
            "오늘은 날씨가", SamplingParams(max_new_tokens=16, temperature=0, stop=[stop], eos_token_ids=[]), done
        )
    )
    assert "".join(pieces) == cut.text and done.finish_reason == "stop"
    assert (
        "".join(engine.stream("오늘은 날씨가", SamplingParams(max_new_tokens=16, temperature=0, eos_token_ids=[])))
        == free.text
    )


def test_prompt_longer_than_max_positions_is_a_clear_error(model):
    from kolm.errors import KolmError

    with pytest.raises(KolmError, match="max positions"):
        Engine(model).generate([[1] * 65], GREEDY)
    # Generation stops at the position limit instead of failing.
    out = Engine(model).generate([[1] * 60], GREEDY)[0]
    assert len(out.token_ids) == 4 and out.finish_reason == "length"


def test_fixed_shape_decode_step_equals_the_plain_one(model, monkeypatch):
    # Engine(compile=True) decodes with model.decode_step (fixed shapes, padded power-of-two cache); here it
    # runs uncompiled, which is the same graph: same greedy tokens, with and without left padding.
    prompts = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 40], [1, 200, 100, 50]]
    params = SamplingParams(max_new_tokens=20, temperature=0, eos_token_ids=[])
    plain = Engine(model).generate(prompts, params)
    fixed = Engine(model, compile=True)
    monkeypatch.setattr(fixed, "_decode_step", lambda: model.decode_step)
    assert fixed._static_len(28) == min(64, model.config.max_seq_len)
    assert [c.token_ids for c in fixed.generate(prompts, params)] == [c.token_ids for c in plain]
    assert fixed.generate(prompts[:1], params)[0].token_ids == plain[0].token_ids


def test_compile_failure_falls_back_to_eager_decoding(model, monkeypatch):
    def broken(*args):
        raise RuntimeError("no compiler here")

    engine = Engine(model, compile=True)
    monkeypatch.setattr(engine, "_decode_step", lambda: engine._step or broken)
    with pytest.warns(UserWarning, match="decoding eagerly"):
        out = engine.generate([[1, 17, 33]], GREEDY)[0]
    assert out.token_ids == Engine(model).generate([[1, 17, 33]], GREEDY)[0].token_ids


@pytest.mark.slow
def test_compiled_decode_gives_the_same_tokens(model):
    # The real torch.compile (tens of seconds): the compiled step decodes the same greedy tokens.
    prompts = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 40]]
    plain = Engine(model).generate(prompts, GREEDY)
    compiled = Engine(model, compile=True).generate(prompts, GREEDY)
    assert [c.token_ids for c in compiled] == [c.token_ids for c in plain]
