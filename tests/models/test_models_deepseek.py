"""KolmDeepseek (MLA + DeepSeekMoE) against transformers' DeepseekV3ForCausalLM, its cache, routing and balance."""

from __future__ import annotations

import pytest
import torch


def make_ds(seed: int = 0, q_lora_rank: int = 0, tied: bool = False, sharpen: float = 1.0, **overrides):
    """A random tiny KolmDeepseek in eval mode; a random balancing bias so the exporter must carry it."""
    from kolm.models.deepseek import KolmDeepseekConfig, KolmDeepseekForCausalLM
    from kolm.models.registry import build_on_meta

    kw = dict(
        vocab_size=300,
        d_model=32,
        n_layers=3,
        n_heads=2,
        q_lora_rank=q_lora_rank,
        kv_lora_rank=16,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=8,
        ffn_dim=48,
        moe_ffn_dim=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        first_k_dense=1,
        routed_scaling_factor=1.5,
        max_seq_len=64,
        tie_word_embeddings=tied,
        init_std=0.1,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    kw.update(overrides)
    torch.manual_seed(seed)
    model = build_on_meta(KolmDeepseekConfig(**kw), KolmDeepseekForCausalLM).eval()
    with torch.no_grad():
        for moe in model.model.moe_layers():
            moe.gate.e_score_correction_bias.normal_(0, 0.1)
        if not tied:
            model.lm_head.weight.mul_(sharpen)
    return model


@pytest.mark.parametrize("q_lora_rank,tied", [(0, True), (24, False)])
def test_logits_and_loss_match_deepseek_v3_fp32(q_lora_rank, tied):
    from kolm.export.hf_deepseek import to_deepseek_v3

    model = make_ds(q_lora_rank=q_lora_rank, tied=tied)
    hf = to_deepseek_v3(model).eval()
    x = torch.randint(3, 300, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(x, labels=x), hf(x, labels=x)
        torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=0)
        # Left padding: the real tokens' logits match on the same masked input.
        mask = torch.ones_like(x)
        mask[0, :6] = 0
        ours = model(x, attention_mask=mask).logits
        theirs = hf(x, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    torch.testing.assert_close(ours[mask.bool()], theirs[mask.bool()], atol=1e-5, rtol=0)


@pytest.mark.parametrize("absorb", [True, False])
def test_latent_cache_decode_equals_full_recompute(absorb):
    model = make_ds(q_lora_rank=24)
    for layer in model.model.layers:
        layer.self_attn.absorb = absorb
    x = torch.randint(3, 300, (2, 18), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x).logits
        cache = model.new_cache(2, 24)
        steps = [model(x[:, :10], cache=cache).logits]
        steps += [model(x[:, t : t + 1], cache=cache).logits for t in range(10, 18)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=2e-5, rtol=0)
    # The cache holds the latent and the rotary key only: kv_lora_rank + qk_rope_head_dim per token and layer.
    assert cache.k.shape[2:] == (1, 24, 16) and cache.v.shape[2:] == (1, 24, 4)


def test_absorbed_and_expanded_attention_give_the_same_logits():
    model = make_ds()
    x = torch.randint(3, 300, (2, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(x)
    mask[1, :3] = 0  # a left-padded row: the absorbed step must hide the padding too
    outs = []
    for absorb in (True, False):
        for layer in model.model.layers:
            layer.self_attn.absorb = absorb
        with torch.no_grad():
            cache = model.new_cache(2, 16)
            steps = [model(x[:, :8], attention_mask=mask[:, :8], cache=cache).logits]
            for t in range(8, 12):  # one query per step against the cached latents
                steps.append(model(x[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=cache).logits)
        outs.append(torch.cat(steps, 1))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)


def test_engine_greedy_equals_recompute_and_batched_equals_unbatched():
    from kolm.infer.engine import Engine
    from kolm.infer.sampling import SamplingParams

    model = make_ds(sharpen=30.0)
    engine = Engine(model)
    params = SamplingParams(max_new_tokens=6, temperature=0, eos_token_ids=[])
    prompts = [[1, 40, 41, 42, 43, 44], [1, 50, 51]]
    batched = [c.token_ids for c in engine.generate(prompts, params)]
    alone = [engine.generate([p], params)[0].token_ids for p in prompts]
    assert batched == alone
    for prompt, got in zip(prompts, alone):  # no cache at all: argmax of the whole sequence each step
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(6):
                ids.append(int(model(torch.tensor([ids]), use_cache=False).logits[0, -1].argmax()))
        assert ids[len(prompt) :] == got


def test_continuous_batching_with_the_latent_cache_matches_single_prompts(tokenizer):
    from kolm.infer.batch import BatchEngine
    from kolm.infer.engine import Engine
    from kolm.infer.sampling import SamplingParams

    model = make_ds(sharpen=30.0, vocab_size=len(tokenizer))
    params = SamplingParams(max_new_tokens=8, temperature=0, eos_token_ids=[])
    prompts = ["오늘은 날씨가", "서울의 봄은 짧지만 꽃이", "도서관"]
    single = [Engine(model, tokenizer).generate([p], params)[0].token_ids for p in prompts]
    engine = BatchEngine(model, tokenizer, max_batch=2).start()  # rows of different lengths join and leave
    try:
        batched = engine.generate([engine.encode(p) for p in prompts], params)
    finally:
        engine.stop()
    assert [b.token_ids for b in batched] == single


def test_routing_respects_top_k_and_normalised_weights():
    from kolm.models.moe import Router

    torch.manual_seed(0)
    router = Router(16, n_experts=6, top_k=3, scale=2.0)
    torch.nn.init.normal_(router.weight)
    scores, weights, chosen = router(torch.randn(50, 16))
    assert chosen.shape == (50, 3) and weights.shape == (50, 3)
    assert all(len(set(row)) == 3 for row in chosen.tolist())  # three distinct experts per token
    torch.testing.assert_close(weights.sum(-1), torch.full((50,), 2.0))  # normalised, then scaled
    # The top-k of the scores: no unchosen expert scores higher than a chosen one.
    best_unchosen = scores.scatter(1, chosen, -1.0).max(-1).values
    assert bool((scores.gather(1, chosen).min(-1).values >= best_unchosen).all())


def test_bias_update_moves_a_skewed_load_toward_balance():
    from kolm.models.moe import MoE, load_stats

    torch.manual_seed(0)
    moe = MoE(8, 4, n_routed=4, n_shared=1, top_k=1).train()
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.1)
    with torch.no_grad():
        moe.gate.weight[0] += 2.0  # expert 0 wins most tokens
        moe.gate.e_score_correction_bias.zero_()
    x = torch.randn(4, 32, 8).abs()  # positive inputs: every token leans to expert 0
    with torch.no_grad():
        moe(x)
        before = load_stats([moe.load])
        for _ in range(200):
            moe.update_bias(0.01)
            moe(x)
        after = load_stats([moe.load])
    assert before["expert_load_max"] > 2.0  # skewed to start with
    assert after["expert_load_max"] < before["expert_load_max"]
    assert after["expert_load_entropy"] > before["expert_load_entropy"] + 0.2
    assert moe.gate.e_score_correction_bias[0] < 0  # the overloaded expert was pushed down


def test_balance_loss_and_router_bias_update_in_training():
    model = make_ds(aux_loss_alpha=0.01).train()
    x = torch.randint(3, 300, (2, 16))
    loss = model(x, labels=x).loss
    plain = model.eval()(x, labels=x).loss
    assert float(loss.detach()) > float(plain.detach())  # the balance loss is added in training only
    model.train()
    loss.backward()
    assert model.model.layers[1].mlp.gate.weight.grad is not None  # the router learns through the gate weights
    bias = model.model.layers[1].mlp.gate.e_score_correction_bias.clone()
    stats = model.update_router_bias()
    assert set(stats) == {"expert_load_min", "expert_load_max", "expert_load_entropy"}
    assert not torch.equal(bias, model.model.layers[1].mlp.gate.e_score_correction_bias)
    assert model.update_router_bias() == {}  # counts were consumed


def test_flops_and_parameter_counts():
    from kolm.models.deepseek import flops_per_token, param_counts
    from kolm.models.registry import flops_per_token as by_registry

    model = make_ds(tied=True)
    c = model.config
    total, active = param_counts(c)
    assert total == sum(p.numel() for p in model.parameters()) - c.vocab_size * c.d_model
    expert = 3 * c.d_model * c.moe_ffn_dim
    assert total - active == (c.n_layers - c.first_k_dense) * (c.n_routed_experts - c.num_experts_per_tok) * expert
    assert flops_per_token(c, 32) > 6 * active
    assert by_registry(c, 32) == flops_per_token(c, 32) + 6 * c.vocab_size * c.d_model  # the tied head's matmul


def test_save_load_auto_classes_classifier_and_lora(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from kolm.models.registry import lora_targets

    model = make_ds()
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(3, 300, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, model(x).logits)
    assert torch.equal(
        again.model.layers[2].mlp.gate.e_score_correction_bias, model.model.layers[2].mlp.gate.e_score_correction_bias
    )
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    mask = torch.ones_like(x)
    mask[1, :4] = 0
    out = clf(x, attention_mask=mask, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=lora_targets(model.config)))
    names = {n for n, _ in peft.named_modules() if n.endswith("lora_A")}
    assert any("kv_b_proj" in n for n in names) and any("experts.3.down_proj" in n for n in names)
    peft.eval()
    with torch.no_grad():  # LoRA B starts at zero, and the expanded path runs under the adapter
        cache = model.new_cache(2, 12)
        peft(input_ids=x, cache=cache)


def test_hf_export_loads_in_vanilla_transformers(tmp_path, tokenizer):
    from transformers import DeepseekV3ForCausalLM

    from kolm.export import export_model

    model = make_ds(vocab_size=len(tokenizer))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = export_model(tmp_path / "model", "hf", tmp_path / "hf")
    hf = DeepseekV3ForCausalLM.from_pretrained(out).eval()
    assert type(hf).__module__.startswith("transformers.")
    x = torch.randint(3, len(tokenizer), (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x).logits, atol=1e-5, rtol=0)


def test_hf_llama_export_refuses_a_deepseek_model(tmp_path):
    from kolm.errors import KolmError
    from kolm.export import export_model

    make_ds().save_pretrained(tmp_path / "model")
    with pytest.raises(KolmError, match="hf-llama export does not apply to deepseek"):
        export_model(tmp_path / "model", "hf-llama", tmp_path / "out")


def test_bad_settings_name_their_field():
    from kolm.errors import ConfigError
    from kolm.model_config import DeepseekConfig, ModelConfig

    with pytest.raises(ConfigError, match="model.deepseek.top_k"):
        ModelConfig(arch="deepseek", deepseek=DeepseekConfig(top_k=9, n_routed_experts=8))
    with pytest.raises(ConfigError, match="qk_rope_head_dim"):
        ModelConfig(arch="deepseek", deepseek=DeepseekConfig(qk_rope_head_dim=5))
    with pytest.raises(ConfigError, match="model.deepseek is set but model.arch is 'gpt'"):
        ModelConfig(arch="gpt", deepseek=DeepseekConfig())
    with pytest.raises(ConfigError, match="choose one of gpt, .*deepseek"):
        from kolm.models.registry import get_arch

        get_arch("mamba")
