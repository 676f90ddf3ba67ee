"""KolmGPT against Hugging Face Llama, and its Hugging Face packaging (save/load, Auto classes, PEFT, pipeline)."""

from __future__ import annotations

import pytest
import torch
from kolm_testkit import llama_twin, make_config, make_model


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_llama_fp32(tied):
    model = make_model(tie_word_embeddings=tied)
    hf = llama_twin(model)
    x = torch.randint(0, model.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, hf(x).logits, atol=1e-5, rtol=0)
        # Left padding with a mask: the real tokens' logits match Llama's on the same (masked) input.
        mask = torch.ones_like(x)
        mask[0, :7] = 0
        ours = model(x, attention_mask=mask).logits
        theirs = hf(x, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    torch.testing.assert_close(ours[mask.bool()], theirs[mask.bool()], atol=1e-5, rtol=0)
    assert torch.isfinite(ours).all()


def test_untied_embeddings_and_loss_match_llama():
    model = make_model(tie_word_embeddings=False)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    hf = llama_twin(model)
    x = torch.randint(0, model.config.vocab_size, (2, 16))
    labels = x.clone()
    labels[:, :3] = -100
    ours, theirs = model(x, labels=labels), hf(x, labels=labels)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=0)
    ours.loss.backward()
    theirs.loss.backward()
    g1 = model.model.layers[0].self_attn.k_proj.weight.grad
    g2 = hf.model.layers[0].self_attn.k_proj.weight.grad
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_init_weights_documented_scheme():
    model = make_model(tie_word_embeddings=True)
    std = model.config.init_std
    w = torch.cat([layer.self_attn.q_proj.weight.flatten() for layer in model.model.layers])
    assert abs(float(w.std()) - std) < 0.2 * std
    o = torch.cat([layer.mlp.down_proj.weight.flatten() for layer in model.model.layers])
    assert float(o.std()) < 0.8 * std  # depth-scaled residual projections
    assert all(bool((layer.input_layernorm.weight == 1).all()) for layer in model.model.layers)
    assert model.lm_head.weight is model.model.embed_tokens.weight


@torch.no_grad()
def test_meta_build_equals_shapes_and_is_initialised():
    import math

    from kolm.model_config import ModelConfig
    from kolm.models.gpt import KolmGPTForCausalLM
    from kolm.models.registry import build_causal_lm

    torch.manual_seed(0)
    m = build_causal_lm(ModelConfig(d_model=32, n_layers=2, max_seq_len=64), 300, 1, 2, 0)  # built on meta
    eager = KolmGPTForCausalLM(m.config)  # the same config built the ordinary way
    # Same parameters and buffers, with the same shapes and dtypes, all materialised on the CPU.
    assert {n: (t.shape, t.dtype) for n, t in m.state_dict().items()} == {
        n: (t.shape, t.dtype) for n, t in eager.state_dict().items()
    }
    assert all(t.device.type == "cpu" for t in [*m.parameters(), *m.buffers()])
    # Initialised per `_init_weights` (not the uninitialised memory `to_empty` leaves behind).
    std, n_layers = m.config.init_std, m.config.n_layers
    layers = m.model.layers
    emb = m.model.embed_tokens.weight
    plain = torch.cat(
        [
            p.weight.flatten()
            for layer in layers
            for p in (
                layer.self_attn.q_proj,
                layer.self_attn.k_proj,
                layer.self_attn.v_proj,
                layer.mlp.gate_proj,
                layer.mlp.up_proj,
            )
        ]
    )
    residual = torch.cat(
        [p.weight.flatten() for layer in layers for p in (layer.self_attn.o_proj, layer.mlp.down_proj)]
    )
    assert float(emb.mean()) == pytest.approx(0.0, abs=0.1 * std)
    assert float(emb.std()) == pytest.approx(std, rel=0.1)
    assert float(plain.std()) == pytest.approx(std, rel=0.1)
    assert float(residual.std()) == pytest.approx(std / math.sqrt(2 * n_layers), rel=0.1)
    norms = [layer.input_layernorm.weight for layer in layers] + [
        layer.post_attention_layernorm.weight for layer in layers
    ]
    assert all(bool((w == 1).all()) for w in [*norms, m.model.norm.weight])
    # An initialised model predicts almost uniformly: the loss of random tokens is close to ln(vocab).
    x = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    loss = float(m(x, labels=x).loss)
    assert loss == pytest.approx(math.log(300), abs=0.1)
    assert m.lm_head.weight is m.model.embed_tokens.weight
    assert m.config.pad_token_id == 0 and m.config.num_hidden_layers == 2 and m.config.hidden_size == 32


def test_save_load_round_trip_safetensors(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    import kolm.models.registry  # noqa: F401

    model = make_model(tie_word_embeddings=True)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "kolm_gpt"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits, atol=0, rtol=0)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_sequence_too_long_is_a_clear_error():
    from kolm.errors import KolmError

    model = make_model()
    with pytest.raises(KolmError, match="max positions 64"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_bad_shapes_are_rejected():
    from kolm.errors import ConfigError
    from kolm.model_config import GPTConfig, ModelConfig

    with pytest.raises(ValueError, match="n_kv_heads"):
        make_config(n_heads=4, n_kv_heads=3)
    with pytest.raises(ConfigError, match="n_kv_heads"):  # one line for the CLI, still a ValueError for transformers
        make_config(n_heads=4, n_kv_heads=3)
    with pytest.raises(ConfigError, match=r"model\.d_model \(30\) must be a multiple of model\.gpt\.n_heads"):
        ModelConfig(d_model=30, gpt=GPTConfig(n_heads=4))


def test_inputs_embeds_equal_input_ids():
    model = make_model()
    x = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        a = model(input_ids=x).logits
        b = model(inputs_embeds=model.get_input_embeddings()(x)).logits
    torch.testing.assert_close(a, b)


def test_hf_generate_matches_llama_greedy():
    model = make_model()
    hf = llama_twin(model)
    x = torch.randint(3, 300, (1, 6))
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert model.generate(x, **kw).tolist() == hf.generate(x, **kw).tolist()


def test_lora_attaches_to_standard_names():
    import peft

    model = make_model()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM"))
    names = {n.split(".")[-1] for n, _ in lora.named_modules() if hasattr(_, "lora_A")}
    assert names == set(targets)
    x = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        plain = make_model()(x).logits
        before = lora(x).logits
    # LoRA B starts at zero: same output; after perturbing B the output moves (the fused path is bypassed).
    torch.testing.assert_close(before, plain)
    for n, p in lora.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    assert not torch.allclose(lora(x).logits, before)
    out = lora(x, labels=x)
    out.loss.backward()
    assert all(p.grad is not None for n, p in lora.named_parameters() if p.requires_grad)


def test_pipeline_text_generation(model_dir):
    from transformers import pipeline

    import kolm.models.registry  # noqa: F401

    gen = pipeline("text-generation", model=str(model_dir))
    out = gen("오늘은 날씨가", max_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"].startswith("오늘은 날씨가")


def test_sequence_classification_pools_last_real_token(tmp_path):
    from transformers import AutoModelForSequenceClassification

    import kolm.models.registry  # noqa: F401

    make_model().save_pretrained(tmp_path)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3).eval()
    assert type(clf).__name__ == "KolmGPTForSequenceClassification"
    x = torch.randint(3, 300, (1, 9))
    with torch.no_grad():
        alone = clf(x).logits
        left = clf(
            torch.cat([torch.zeros(1, 4, dtype=torch.long), x], 1),
            attention_mask=torch.cat([torch.zeros(1, 4), torch.ones(1, 9)], 1).long(),
        ).logits
        right = clf(torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], 1)).logits  # pad id 0, no mask
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(right, alone, atol=1e-5, rtol=0)
    out = clf(x.repeat(2, 1), labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss.requires_grad


def test_activation_checkpointing_gives_the_same_gradients():
    model = make_model(tie_word_embeddings=True).train()
    x = torch.randint(0, 300, (2, 12))
    model(x, labels=x).loss.backward()
    plain = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert model.model.gradient_checkpointing
    model(x, labels=x).loss.backward()
    torch.testing.assert_close(model.model.layers[0].mlp.up_proj.weight.grad, plain)


def test_in_place_updates_without_version_bump_are_seen():
    """Fused AdamW (CPU) and FSDP2 write weights in place without bumping `_version`; no stale fused copy may be used."""
    import torch

    from kolm.model_config import GPTConfig, ModelConfig
    from kolm.models.blocks import reuse_fused_weights
    from kolm.models.registry import build_causal_lm

    torch.manual_seed(0)
    model = build_causal_lm(
        ModelConfig(d_model=32, n_layers=1, max_seq_len=32, gpt=GPTConfig(n_heads=4, n_kv_heads=2, ffn_dim=64)), 50
    ).eval()
    ids = torch.randint(0, 50, (1, 8))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        q = model.model.layers[0].self_attn.q_proj.weight
        version = q._version
        q.data.mul_(2.0)  # .data writes bypass the version counter, like a fused optimizer step
        assert q._version == version
        after = model(input_ids=ids).logits
        with reuse_fused_weights(model):
            inside = model(input_ids=ids).logits
    assert not torch.allclose(before, after)
    assert torch.allclose(after, inside)


@pytest.mark.parametrize("num_items", [None, 50])
def test_chunked_lm_head_loss_equals_full_logits(num_items):
    # skip_logits=True: the loss and every gradient as with full (B, T, V) logits, in small row chunks.
    from kolm.models import gpt

    model = make_model(tie_word_embeddings=False).train()
    x = torch.randint(0, model.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(2))
    labels = x.clone()
    labels[:, :4] = -100
    runs = []
    for skip in (False, True):
        model.zero_grad()
        out = model(input_ids=x, labels=labels, skip_logits=skip, num_items_in_batch=num_items)
        out.loss.backward()
        runs.append((out, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (full, g_full), (chunked, g_chunked) = runs
    assert chunked.logits is None and full.logits.shape == (3, 20, model.config.vocab_size)
    torch.testing.assert_close(chunked.loss, full.loss, atol=1e-6, rtol=1e-6)
    for name in g_full:
        torch.testing.assert_close(g_chunked[name], g_full[name], atol=1e-6, rtol=1e-5)
    # Many chunks (one row each) give the same loss as one.
    h = torch.randn(2, 5, 32)
    w = torch.randn(300, 32)
    lab = torch.randint(0, 300, (2, 5))
    one = gpt._LMHeadLoss.apply(
        h.reshape(-1, 32),
        w,
        torch.nn.functional.pad(lab[:, 1:], (0, 1), value=-100).reshape(-1),
        1,
        torch.float32,
        None,
    )
    torch.testing.assert_close(one, gpt.lm_head_loss(h, w, lab))


def test_explicit_causal_attention_equals_sdpa():
    # The bf16 CPU training path's attention (matmuls, grouped heads) is SDPA's causal attention.
    from kolm.models.blocks import causal_attention_bmm

    g = torch.Generator().manual_seed(3)
    q, k, v = (
        torch.randn(2, 6, 9, 8, generator=g),
        torch.randn(2, 2, 9, 8, generator=g),
        torch.randn(2, 2, 9, 8, generator=g),
    )
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(causal_attention_bmm(q, k, v), ref, atol=1e-5, rtol=1e-5)


def test_bf16_training_step_is_close_to_llama():
    # bf16 autocast on CPU takes the explicit attention and the chunked loss; the loss stays Llama's.
    model = make_model(tie_word_embeddings=False).train()
    hf = llama_twin(model).train()
    x = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = model(input_ids=x, labels=x, skip_logits=True).loss
        theirs = hf(input_ids=x, labels=x).loss
    torch.testing.assert_close(ours, theirs, atol=2e-2, rtol=0)
    ours.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_compiled_fp32_training_step_equals_eager():
    # Compiled fp32 CPU training takes the matmul attention (blocks._explicit_attention); eager keeps SDPA.
    # Same loss and gradients either way.
    pytest.importorskip("torch._inductor")
    from kolm.train.loop import compiled_or_plain

    model = make_model(seed=4, sharpen=1.0).train()
    compiled = compiled_or_plain(model)
    if compiled is model:
        pytest.skip("torch.compile is unavailable here")
    x = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(5))

    def loss_and_grads(forward):
        model.zero_grad(set_to_none=True)
        loss = forward(input_ids=x, labels=x, skip_logits=True).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    ref_loss, ref_grads = loss_and_grads(model)
    loss, grads = loss_and_grads(compiled)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=name)
