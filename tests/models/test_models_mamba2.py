"""KolmMamba2 against transformers' Mamba2ForCausalLM; the chunked scan against the recurrence; its state."""

from __future__ import annotations

import pytest
import torch


def make_m2(seed: int = 0, tied: bool = False, sharpen: float = 1.0, **overrides):
    """A random tiny KolmMamba2 in eval mode."""
    from kolm.models.mamba2 import KolmMamba2Config, KolmMamba2ForCausalLM
    from kolm.models.registry import build_on_meta

    kw = dict(
        vocab_size=300,
        d_model=32,
        n_layers=2,
        d_state=8,
        head_dim=8,
        expand=2,
        n_groups=1,
        chunk_size=8,
        max_seq_len=64,
        tie_word_embeddings=tied,
        init_std=0.1,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    kw.update(overrides)
    torch.manual_seed(seed)
    model = build_on_meta(KolmMamba2Config(**kw), KolmMamba2ForCausalLM).eval()
    if not tied:
        with torch.no_grad():
            model.lm_head.weight.mul_(sharpen)
    return model


@pytest.mark.parametrize("groups,tied,chunk", [(1, True, 8), (2, False, 5)])
def test_logits_and_loss_match_mamba2_fp32(groups, tied, chunk):
    from kolm.export.hf_mamba2 import to_mamba2

    model = make_m2(n_groups=groups, tied=tied, chunk_size=chunk)
    hf = to_mamba2(model).eval()
    x = torch.randint(3, 300, (3, 21), generator=torch.Generator().manual_seed(1))  # 21: chunks do not divide it
    with torch.no_grad():
        ours, theirs = model(x, labels=x), hf(x, labels=x)
        torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=0)
        mask = torch.ones_like(x)
        mask[0, :6] = 0
        padded, theirs = model(x, attention_mask=mask).logits, hf(x, attention_mask=mask).logits
        alone = model(x[:1, 6:]).logits
    torch.testing.assert_close(padded[mask.bool()], theirs[mask.bool()], atol=1e-5, rtol=0)
    torch.testing.assert_close(padded[0, 6:], alone[0], atol=1e-5, rtol=0)  # padding leaves no trace in the state


@pytest.mark.parametrize("chunk", [1, 4, 7, 32])
def test_chunked_scan_equals_the_recurrence(chunk):
    from kolm.models.mamba2 import ssd_scan, ssd_step

    g = torch.Generator().manual_seed(0)
    b, t, h, p, n, groups = 2, 13, 4, 3, 5, 2
    x = torch.randn(b, t, h, p, generator=g)
    dt = torch.rand(b, t, h, generator=g) * 0.5
    A = -torch.rand(h, generator=g) - 0.1
    B, C = torch.randn(b, t, groups, n, generator=g), torch.randn(b, t, groups, n, generator=g)
    initial = torch.randn(b, h, p, n, generator=g)
    y, final = ssd_scan(x, dt, A, B, C, chunk, initial.clone())
    state = initial.clone()
    steps = torch.stack([ssd_step(x[:, i], dt[:, i], A, B[:, i], C[:, i], state) for i in range(t)], dim=1)
    torch.testing.assert_close(y, steps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(final, state, atol=1e-5, rtol=1e-5)


def test_state_decode_equals_full_recompute():
    model = make_m2()
    x = torch.randint(3, 300, (2, 19), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x).logits
        state = model.new_cache(2, 64)
        steps = [model(x[:, :11], cache=state).logits]
        steps += [model(x[:, t : t + 1], cache=state).logits for t in range(11, 19)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
    assert state.get_seq_length() == 19
    # Fixed size: the conv inputs and the scan state, whatever the length.
    assert state.buffers["ssm"].shape == (2, 2, 8, 8, 8) and state.buffers["conv"].shape == (2, 2, 64 + 16, 3)


def test_engine_greedy_equals_recompute_and_batched_equals_unbatched():
    from kolm.infer.engine import Engine
    from kolm.infer.sampling import SamplingParams

    model = make_m2(sharpen=30.0)
    engine = Engine(model)
    params = SamplingParams(max_new_tokens=6, temperature=0, eos_token_ids=[])
    prompts = [[1, 40, 41, 42, 43, 44], [1, 50, 51]]  # the second is left-padded in the batch
    batched = [c.token_ids for c in engine.generate(prompts, params)]
    alone = [engine.generate([p], params)[0].token_ids for p in prompts]
    assert batched == alone
    for prompt, got in zip(prompts, alone):
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(6):
                ids.append(int(model(torch.tensor([ids]), use_cache=False).logits[0, -1].argmax()))
        assert ids[len(prompt) :] == got
    hf_generate = model.generate(torch.tensor([prompts[0]]), max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert hf_generate[0, len(prompts[0]) :].tolist() == alone[0]  # transformers' generate() runs on our state too


def test_continuous_batching_with_the_recurrent_state_matches_single_prompts(tokenizer):
    from kolm.infer.batch import BatchEngine
    from kolm.infer.engine import Engine
    from kolm.infer.sampling import SamplingParams

    model = make_m2(sharpen=30.0, vocab_size=len(tokenizer))
    params = SamplingParams(max_new_tokens=8, temperature=0, eos_token_ids=[])
    prompts = ["오늘은 날씨가", "서울의 봄은 짧지만 꽃이", "도서관"]
    single = [Engine(model, tokenizer).generate([p], params)[0].token_ids for p in prompts]
    engine = BatchEngine(model, tokenizer, max_batch=2).start()
    try:
        batched = engine.generate([engine.encode(p) for p in prompts], params)
    finally:
        engine.stop()
    assert [b.token_ids for b in batched] == single


def test_save_load_classifier_lora_and_flops(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from kolm.models.mamba2 import param_count
    from kolm.models.registry import flops_per_token, lora_targets

    model = make_m2(tied=True)
    c = model.config
    assert param_count(c) == sum(p.numel() for p in model.parameters()) - c.vocab_size * c.d_model
    assert flops_per_token(c, 128) > 6 * param_count(c)
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(3, 300, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, model(x).logits)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    out = clf(x, attention_mask=mask, labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 2) and torch.isfinite(out.loss)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=lora_targets(model.config)))
    assert sum(1 for n, _ in peft.named_modules() if n.endswith("lora_A")) == 2 * c.n_layers


def test_hf_export_loads_in_vanilla_transformers(tmp_path, tokenizer):
    from transformers import Mamba2ForCausalLM

    from kolm.export import export_model

    model = make_m2(vocab_size=len(tokenizer))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = export_model(tmp_path / "model", "hf", tmp_path / "hf")
    hf = Mamba2ForCausalLM.from_pretrained(out).eval()
    x = torch.randint(3, len(tokenizer), (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x).logits, atol=1e-5, rtol=0)


def test_bad_settings_name_their_field():
    from kolm.errors import ConfigError
    from kolm.model_config import Mamba2Config, ModelConfig

    with pytest.raises(ConfigError, match=r"model\.mamba2\.head_dim \(24\)"):
        ModelConfig(arch="mamba2", d_model=32, mamba2=Mamba2Config(head_dim=24))
    with pytest.raises(ConfigError, match=r"model\.mamba2\.n_groups \(3\)"):
        ModelConfig(arch="mamba2", d_model=32, mamba2=Mamba2Config(head_dim=16, n_groups=3))


def test_recurrent_state_select_and_reset_keep_rows_consistent():
    model = make_m2()
    x = torch.randint(3, 300, (3, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        state = model.new_cache(3, 16)
        model(x[:, :8], cache=state)
        state.select(torch.tensor([2, 0]))  # keep rows 2 and 0, in that order
        kept = model(x[[2, 0], 8:], cache=state).logits
        torch.testing.assert_close(kept, model(x[[2, 0]]).logits[:, -1:], atol=1e-5, rtol=0)
        state.reset()
        assert state.get_seq_length() == 0 and not state.buffers["ssm"].any()
        torch.testing.assert_close(model(x[[2, 0], :4], cache=state).logits, model(x[[2, 0], :4]).logits)
