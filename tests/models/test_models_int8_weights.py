"""Int8 weight-only layers (`quant="int8-wo"`): the rounding bound, the fused projections, the loader and the engine."""

from __future__ import annotations

import copy

import pytest
import torch
from kolm_testkit import make_model

from kolm.errors import KolmError
from kolm.models.int8_weights import (
    Int8Linear,
    int8_matmul,
    int8_weights_available,
    quantize_int8_weights,
    quantize_weight,
)

pytestmark = pytest.mark.skipif(not int8_weights_available(), reason="no torch._weight_int8pack_mm in this torch")


def test_rounding_stays_within_half_a_step_of_each_row():
    w = torch.randn(37, 24, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 3.0, 37)[:, None]
    w[5] = 0.0  # an all-zero row keeps a harmless scale
    q, scale = quantize_weight(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.bfloat16 and q.shape == w.shape
    assert int(q.abs().max()) <= 127
    step = scale.float()[:, None]
    err = (q.float() * step - w).abs()
    assert bool((err <= 0.5 * step * (1 + 2**-7) + 1e-12).all())
    assert bool((q[5] == 0).all())


def test_int8_linear_is_the_product_with_its_dequantized_weight():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 40, bias=False)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(3, 5, 48)
    with torch.no_grad():
        got, full = layer(x), linear(x)  # (3, 5, 40), fp32 out
    dequant = layer.qweight.float() * layer.scales.float()[:, None]
    want = x.to(torch.bfloat16).float() @ dequant.T  # the kernel's inputs: bf16 activations, exact int8 x scale
    assert got.shape == (3, 5, 40) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)  # bf16 output rounding
    assert float((got - full).abs().max() / full.abs().max()) < 0.03  # close to the fp32 layer
    assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_bias_and_bad_weights_are_refused():
    with pytest.raises(KolmError, match="bias"):
        Int8Linear.from_linear(torch.nn.Linear(4, 4))
    with pytest.raises(KolmError, match="int8"):
        Int8Linear(torch.zeros(4, 4), torch.ones(4))


def test_quantize_replaces_every_linear_the_head_too_and_keeps_the_embedding():
    model = make_model(sharpen=1.0)
    q = quantize_int8_weights(copy.deepcopy(model))
    linears = [n for n, m in q.named_modules() if type(m) is torch.nn.Linear]
    assert linears == []
    assert type(q.lm_head) is Int8Linear and q.model.embed_tokens.weight.dtype == torch.float32
    assert q.new_cache(1, 8)._k[0].dtype == torch.float32  # the cache follows the activations, not the head
    x = torch.randint(3, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = model(x, labels=x), q(x, labels=x)
    assert float((got.logits - ref.logits).abs().max() / ref.logits.abs().max()) < 0.03
    assert abs(float(got.loss) - float(ref.loss)) < 0.01 * float(ref.loss)


def test_fused_projection_equals_the_layers_one_by_one():
    from kolm.models.blocks import _fused_projection, _FusedWeight

    torch.manual_seed(0)
    layers = [Int8Linear.from_linear(torch.nn.Linear(32, n, bias=False)) for n in (32, 16, 16)]
    x = torch.randn(2, 3, 32)
    fused = _FusedWeight()
    got = _fused_projection(fused, x, *layers)
    want = torch.cat([m(x) for m in layers], dim=-1)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    kept = fused._frozen["qweight"][1]
    fused.clear()  # a new generation: int8 buffers never change, so their concatenation is kept
    assert _fused_projection(fused, x, *layers) is not None and fused._frozen["qweight"][1] is kept


def test_engine_decodes_an_int8_model_the_same_with_the_fixed_shape_step(monkeypatch):
    from kolm.infer.engine import Engine, SamplingParams

    q = quantize_int8_weights(make_model())
    params = SamplingParams(max_new_tokens=16, temperature=0, eos_token_ids=[])
    prompts = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 40], [1, 200, 100, 50]]
    plain = Engine(q).generate(prompts, params)
    fixed = Engine(q, compile=True)
    monkeypatch.setattr(fixed, "_decode_step", lambda: q.decode_step)  # the compiled graph's code, run eagerly
    assert [c.token_ids for c in fixed.generate(prompts, params)] == [c.token_ids for c in plain]
    assert all(len(c.token_ids) == 16 for c in plain)


def test_the_loader_quantizes_and_checks_the_device(model_dir):
    from kolm.models.loading import load_model
    from kolm.models.quant import check_quant

    model, _ = load_model(model_dir, quant="int8-wo")
    assert type(model.lm_head) is Int8Linear and type(model.model.layers[0].mlp.down_proj) is Int8Linear
    with pytest.raises(KolmError, match="CPU"):
        check_quant("int8-wo", "cuda")
    bf16, _ = load_model(model_dir, quant="int8-wo", dtype="bf16")  # bf16 activations around int8 weights
    assert bf16.model.embed_tokens.weight.dtype == torch.bfloat16
    x = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        assert bf16(x).logits.dtype == torch.bfloat16


def test_int8_matmul_keeps_leading_dims():
    q, s = quantize_weight(torch.randn(8, 16))
    assert int8_matmul(torch.randn(16), q, s).shape == (8,)
    assert int8_matmul(torch.randn(2, 3, 4, 16), q, s).shape == (2, 3, 4, 8)


@pytest.mark.slow
def test_compiled_int8_decode_gives_the_same_tokens():
    # The real torch.compile (C++ wrapper; tens of seconds): compiled int8 decode = eager int8 decode.
    from kolm.infer.engine import Engine, SamplingParams

    q = quantize_int8_weights(make_model()).to(torch.bfloat16)
    params = SamplingParams(max_new_tokens=12, temperature=0, eos_token_ids=[])
    prompts = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 40]]
    plain = Engine(q).generate(prompts, params)
    compiled = Engine(q, compile=True).generate(prompts, params)
    assert [c.token_ids for c in compiled] == [c.token_ids for c in plain]


@pytest.mark.parametrize("arch", ["mamba2", "rwkv7", "deepseek"])
def test_other_architectures_run_with_int8_weights(arch):
    # Layers that read a weight directly (MLA's absorbed decode) see an Int8Linear and take their plain path.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    from train_helpers import arch_overrides

    from kolm.config import load_config
    from kolm.infer.generate import generator_for
    from kolm.infer.sampling import SamplingParams
    from kolm.models.registry import build_causal_lm

    torch.manual_seed(0)
    model = build_causal_lm(load_config("tiny", arch_overrides(arch)).model, 300, 1, 2, 0).eval()
    q = quantize_int8_weights(copy.deepcopy(model))
    assert not [n for n, m in q.named_modules() if type(m) is torch.nn.Linear and m.bias is None]
    x = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = model(x).logits, q(x).logits
    assert float((got - ref).abs().max() / ref.abs().max()) < 0.05
    params = SamplingParams(max_new_tokens=6, temperature=0, eos_token_ids=[])
    assert len(generator_for(q, None).generate([[1, 5, 6, 7]], params)[0].token_ids) == 6
