"""KolmRWKV7: chunked form vs recurrent form vs a reference written here from the paper's equations; its state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F


def make_rwkv(seed: int = 0, sharpen: float = 1.0, perturb: float = 0.3, **overrides):
    """A tiny KolmRWKV7 in eval mode; its init zeroes several tensors, so they get noise to make every term count."""
    from kolm.models.registry import build_on_meta
    from kolm.models.rwkv7 import KolmRWKV7Config, KolmRWKV7ForCausalLM

    kw = dict(
        vocab_size=300,
        d_model=32,
        n_layers=3,
        head_size=8,
        ffn_dim=64,
        decay_rank=8,
        a_rank=8,
        v_rank=4,
        gate_rank=8,
        chunk_size=5,
        max_seq_len=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    kw.update(overrides)
    torch.manual_seed(seed)
    model = build_on_meta(KolmRWKV7Config(**kw), KolmRWKV7ForCausalLM).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" not in name:
                p.add_(torch.randn_like(p) * perturb)
        model.lm_head.weight.mul_(sharpen)
    return model


def reference_logits(model, ids: list[int]) -> torch.Tensor:
    """RWKV-7 token by token, from the paper's equations with explicit matrices (no code shared with the model).

    Per head: S_t = S_{t-1} (diag(w_t) - κ̂_tᵀ (a_t κ̂_t)) + v_tᵀ k_t, o_t = S_t r_tᵀ, with row vectors.
    """
    c = model.config
    H, N, C = c.n_heads, c.head_size, c.d_model
    m = model.model
    with torch.no_grad():
        L = c.n_layers
        att_prev = [torch.zeros(C) for _ in range(L)]
        ffn_prev = [torch.zeros(C) for _ in range(L)]
        S = [[torch.zeros(N, N) for _ in range(H)] for _ in range(L)]
        out = []
        for tok in ids:
            x = F.layer_norm(m.embed_tokens.weight[tok], (C,), m.ln0.weight, m.ln0.bias, c.norm_eps)
            v_first = None
            for li, block in enumerate(m.layers):
                a_ = block.att
                h = F.layer_norm(x, (C,), block.ln1.weight, block.ln1.bias, c.norm_eps)

                def lerp(mix, h=h, prev=att_prev[li]):
                    return h + (prev - h) * mix

                att_prev[li] = h
                r = a_.receptance.weight @ lerp(a_.x_r)
                w = torch.exp(-math.exp(-0.5) * torch.sigmoid(a_.w0 + torch.tanh(lerp(a_.x_w) @ a_.w1) @ a_.w2))
                k = a_.key.weight @ lerp(a_.x_k)
                v = a_.value.weight @ lerp(a_.x_v)
                if li == 0:
                    v_first = v
                else:
                    v = v + (v_first - v) * torch.sigmoid(a_.v0 + (lerp(a_.x_v) @ a_.v1) @ a_.v2)
                a = torch.sigmoid(a_.a0 + (lerp(a_.x_a) @ a_.a1) @ a_.a2)
                g = torch.sigmoid(lerp(a_.x_g) @ a_.g1) @ a_.g2
                kk = k * a_.k_k
                k = k * (1 + (a - 1) * a_.k_a)
                y = torch.zeros(C)
                for hd in range(H):
                    sl = slice(hd * N, (hd + 1) * N)
                    kh = kk[sl] / kk[sl].norm().clamp(min=1e-12)
                    transition = torch.diag(w[sl]) - kh[:, None] @ (a[sl] * kh)[None, :]
                    S[li][hd] = S[li][hd] @ transition + v[sl][:, None] @ k[sl][None, :]
                    o = S[li][hd] @ r[sl]
                    o = (o - o.mean()) / torch.sqrt(o.var(unbiased=False) + 64e-5)  # GroupNorm, one group per head
                    o = o * a_.ln_x.weight[sl] + a_.ln_x.bias[sl]
                    y[sl] = o + (r[sl] * k[sl] * a_.r_k[hd]).sum() * v[sl]
                x = x + a_.output.weight @ (y * g)
                f = block.ffn
                h = F.layer_norm(x, (C,), block.ln2.weight, block.ln2.bias, c.norm_eps)
                xk = h + (ffn_prev[li] - h) * f.x_k
                ffn_prev[li] = h
                x = x + f.value.weight @ torch.relu(f.key.weight @ xk) ** 2
            out.append(model.lm_head.weight @ F.layer_norm(x, (C,), m.ln_out.weight, m.ln_out.bias, c.norm_eps))
    return torch.stack(out)


def test_parallel_form_matches_the_reference_from_the_equations():
    model = make_rwkv()
    ids = torch.randint(3, 300, (13,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(ours, reference_logits(model, ids), atol=3e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 4, 16])
def test_chunked_state_update_equals_the_recurrent_one(chunk):
    from kolm.models.rwkv7 import wkv_chunked, wkv_step

    g = torch.Generator().manual_seed(0)
    B, T, H, N = 2, 21, 3, 4
    r, k, v = (torch.randn(B, T, H, N, generator=g) for _ in range(3))
    log_w = -torch.rand(B, T, H, N, generator=g) * 0.6
    kappa = F.normalize(torch.randn(B, T, H, N, generator=g), dim=-1)
    a = torch.rand(B, T, H, N, generator=g)
    S0 = torch.randn(B, H, N, N, generator=g)
    y, S = wkv_chunked(r, log_w, k, v, kappa, a, S0.clone(), chunk)
    state = S0.clone()
    steps = torch.stack(
        [wkv_step(r[:, t], log_w[:, t], k[:, t], v[:, t], kappa[:, t], a[:, t], state) for t in range(T)], 1
    )
    torch.testing.assert_close(y, steps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(S, state, atol=1e-5, rtol=1e-5)


def test_recurrent_decode_equals_full_recompute_and_padding_leaves_no_trace():
    model = make_rwkv()
    x = torch.randint(3, 300, (3, 19), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x).logits
        state = model.new_cache(3, 64)
        steps = [model(x[:, :7], cache=state).logits]
        steps += [model(x[:, t : t + 1], cache=state).logits for t in range(7, 19)]
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=2e-5, rtol=0)
        mask = torch.ones_like(x)
        mask[0, :5] = 0
        padded = model(x, attention_mask=mask).logits
        alone = model(x[:1, 5:]).logits
    torch.testing.assert_close(padded[0, 5:], alone[0], atol=2e-5, rtol=0)
    assert state.buffers["wkv"].shape == (3, 3, 4, 8, 8) and state.buffers["wkv"].dtype == torch.float32


def test_engine_greedy_equals_recompute_batched_and_hf_generate():
    from kolm.infer.engine import Engine
    from kolm.infer.sampling import SamplingParams

    model = make_rwkv(sharpen=10.0)
    engine = Engine(model)
    params = SamplingParams(max_new_tokens=6, temperature=0, eos_token_ids=[])
    prompts = [[1, 40, 41, 42, 43, 44], [1, 50, 51]]
    batched = [c.token_ids for c in engine.generate(prompts, params)]
    alone = [engine.generate([p], params)[0].token_ids for p in prompts]
    assert batched == alone
    for prompt, got in zip(prompts, alone):
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(6):
                ids.append(int(model(torch.tensor([ids]), use_cache=False).logits[0, -1].argmax()))
        assert ids[len(prompt) :] == got
    hf = model.generate(torch.tensor([prompts[0]]), max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert hf[0, len(prompts[0]) :].tolist() == alone[0]


def test_continuous_batching_matches_single_prompts(tokenizer):
    from kolm.infer.batch import BatchEngine
    from kolm.infer.engine import Engine
    from kolm.infer.sampling import SamplingParams

    model = make_rwkv(sharpen=10.0, vocab_size=len(tokenizer))
    params = SamplingParams(max_new_tokens=8, temperature=0, eos_token_ids=[])
    prompts = ["오늘은 날씨가", "서울의 봄은 짧지만 꽃이", "도서관"]
    single = [Engine(model, tokenizer).generate([p], params)[0].token_ids for p in prompts]
    engine = BatchEngine(model, tokenizer, max_batch=2).start()
    try:
        batched = engine.generate([engine.encode(p) for p in prompts], params)
    finally:
        engine.stop()
    assert [b.token_ids for b in batched] == single


def test_init_save_load_classifier_lora_and_flops(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from kolm.models.registry import flops_per_token, lora_targets
    from kolm.models.rwkv7 import param_count

    fresh = make_rwkv(perturb=0.0, tie_word_embeddings=True)
    c = fresh.config
    assert param_count(c) == sum(p.numel() for p in fresh.parameters()) - c.vocab_size * c.d_model
    assert flops_per_token(c, 128) > 6 * param_count(c)
    assert all(bool((b.att.output.weight == 0).all()) for b in fresh.model.layers)  # blocks start as the identity
    model = make_rwkv()
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(3, 300, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, model(x).logits)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    out = clf(x, attention_mask=torch.ones_like(x), labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 2) and torch.isfinite(out.loss)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=lora_targets(model.config)))
    assert sum(1 for n, _ in peft.named_modules() if n.endswith("lora_A")) == 6 * c.n_layers


def test_bad_settings_name_their_field():
    from kolm.errors import ConfigError
    from kolm.model_config import ModelConfig, RWKV7Config

    with pytest.raises(ConfigError, match=r"model\.rwkv7\.head_size \(48\)"):
        ModelConfig(arch="rwkv7", d_model=64, rwkv7=RWKV7Config(head_size=48))
