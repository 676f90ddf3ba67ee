"""The other architectures, quantized loading, continuous batching and vLLM on CUDA.

Marked `gpu` and skipped without CUDA (`pytest -m gpu tests/gpu` on a GPU machine):
- Mamba-2, RWKV-7 and DeepSeek (MoE + MLA) take bf16 autocast training steps, train under
  FSDP2 with the bf16 policy, and decode on CUDA with their caches exactly as their full forward;
- bitsandbytes LLM.int8 and NF4 through the one loader (`quant=`) generate;
- the serving engine batches concurrent requests on CUDA to the same tokens as one at a time;
- vLLM (where installed) runs the hf-llama export to our greedy tokens.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from kolm_testkit import make_tokenizer  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.timeout(600),
]

ARCHS = ["gpt", "mamba2", "rwkv7", "deepseek"]
VOCAB = 512


def _model_config(arch: str, d_model: int = 128, n_layers: int = 4):
    """The `model:` section of a small model of `arch` (untied head, so decoding can be sharpened)."""
    from kolm.model_config import DeepseekConfig, GPTConfig, Mamba2Config, ModelConfig, RWKV7Config

    section = {
        "gpt": {"gpt": GPTConfig(n_heads=4, n_kv_heads=2, ffn_dim=384)},
        "mamba2": {"mamba2": Mamba2Config(d_state=16, head_dim=32, chunk_size=32)},
        "rwkv7": {"rwkv7": RWKV7Config(head_size=32, ffn_dim=384, chunk_size=16)},
        "deepseek": {
            "deepseek": DeepseekConfig(
                n_heads=4,
                kv_lora_rank=32,
                qk_nope_head_dim=16,
                qk_rope_head_dim=8,
                v_head_dim=16,
                ffn_dim=256,
                moe_ffn_dim=64,
                n_routed_experts=8,
                top_k=2,
                first_k_dense=1,
            )
        },
    }[arch]
    return ModelConfig(arch=arch, d_model=d_model, n_layers=n_layers, max_seq_len=256, tie_embeddings=False, **section)


def _build(arch: str, device: str = "cuda", sharpen: float = 1.0, seed: int = 0, **shape):
    from kolm.models.registry import build_causal_lm

    torch.manual_seed(seed)
    model = build_causal_lm(_model_config(arch, **shape), VOCAB, bos_id=1, eos_id=2, pad_id=0, device=device)
    if sharpen != 1.0:  # a random init is near uniform: a sharper head makes greedy choices decisive
        with torch.no_grad():
            model.lm_head.weight.mul_(sharpen)
    return model


def _batch(batch: int = 8, seq: int = 128, seed: int = 0) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed)).cuda()
    return {"input_ids": ids, "labels": ids}


# ----------------------------------------------------------------------------
# training on CUDA


@pytest.mark.parametrize("arch", ARCHS[1:])
def test_bf16_training_steps_of_each_architecture(arch):
    from kolm.train.loop import LoopSettings, autocast_context, train
    from kolm.train.optim import build_adamw

    model = _build(arch).train()
    batch = _batch()
    with torch.no_grad():
        fp32 = float(model(**batch).loss)
        with autocast_context("bf16", "cuda"):
            bf16 = float(model(**batch).loss)
    assert math.isfinite(bf16) and bf16 == pytest.approx(fp32, rel=2e-2)
    state = train(
        model,
        itertools.repeat(batch),
        build_adamw(model, lr=2e-3),
        settings=LoopSettings(max_steps=4, precision="bf16", log_every=1),
        device="cuda",
    )
    assert state.step == 4 and math.isfinite(state.loss) and state.loss < fp32
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHS[1:])
def test_fsdp2_bf16_trains_each_architecture(arch, nccl_world_of_one):
    from torch.distributed.fsdp import FSDPModule

    from kolm.train import distributed as dist
    from kolm.train.loop import LoopSettings, train
    from kolm.train.optim import build_adamw

    model = _build(arch).train()
    blocks = dist.transformer_blocks(model)
    assert len(blocks) == 4  # the decoder blocks, not a MoE layer's experts
    model = dist.wrap_model(model, "fsdp", "cuda:0", precision="bf16")
    assert all(isinstance(b, FSDPModule) for b in blocks)
    batch = _batch()
    first = float(model(**batch).loss.detach())
    state = train(
        model,
        itertools.repeat(batch),
        build_adamw(model, lr=2e-3),
        settings=LoopSettings(max_steps=3, grad_accum=2, grad_clip=1.0, precision="bf16", log_every=1),
        device="cuda:0",
    )
    assert state.step == 3 and math.isfinite(state.loss) and state.loss < first


# ----------------------------------------------------------------------------
# decoding on CUDA


@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_decoding_equals_the_full_forward(arch):
    """Greedy tokens from the engine (KV cache, latent cache or recurrent state, on CUDA) for a left-padded batch
    equal the argmax of the full forward over each growing sequence, and each prompt decoded alone."""
    from kolm.infer.engine import Engine
    from kolm.infer.sampling import SamplingParams

    model = _build(arch, sharpen=30.0).eval()
    tok = make_tokenizer()
    engine = Engine(model, tok)
    prompts = [[1, 17, 40, 99, 7, 250, 31], [1, 5, 300], [1, 64, 65, 66, 67]]
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    batched = [c.token_ids for c in engine.generate(prompts, params)]
    alone = [engine.generate([p], params)[0].token_ids for p in prompts]
    assert batched == alone
    for prompt, out in zip(prompts, batched, strict=True):
        seq = list(prompt)
        for token in out:
            with torch.no_grad():
                logits = model(torch.tensor([seq], device="cuda")).logits[0, -1]
            assert int(logits.argmax()) == token, (arch, seq)
            seq.append(token)


@pytest.mark.parametrize("arch", ["gpt", "mamba2"])
def test_continuous_batching_on_cuda_equals_one_at_a_time(arch):
    from kolm.infer.batch import BatchEngine
    from kolm.infer.sampling import SamplingParams

    model = _build(arch, sharpen=30.0).eval()
    engine = BatchEngine(model, make_tokenizer(), max_batch=8).start()
    try:
        assert engine.device.type == "cuda"
        prompts = [[1, *range(10 + i, 10 + i + 3 + 2 * i)] for i in range(8)]
        params = SamplingParams(max_new_tokens=10, temperature=0.0)
        together = [c.token_ids for c in engine.generate(prompts, params)]
        one_by_one = [engine.generate([p], params)[0].token_ids for p in prompts]
        assert together == one_by_one
        assert engine.counters["peak_batch"] > 1
    finally:
        engine.stop()


# ----------------------------------------------------------------------------
# bitsandbytes through the one loader


@pytest.fixture
def model_dir(tmp_path):
    """A small KolmGPT (sharpened head) saved with a tokenizer, as `kolm pretrain` leaves one."""
    tok = make_tokenizer()
    model = _build("gpt", device="cpu", sharpen=30.0, d_model=256)
    out = tmp_path / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("quant", ["llm-int8", "nf4"])
def test_bitsandbytes_quantized_loading_generates(quant, model_dir):
    bnb = pytest.importorskip("bitsandbytes", reason="quant llm-int8/nf4 needs bitsandbytes (pip install bitsandbytes)")
    from kolm.infer.generate import SamplingParams, generate
    from kolm.models.loading import load_model

    ref_model, tok = load_model(model_dir, device="cuda")
    model, _ = load_model(model_dir, device="cuda", quant=quant)
    layer = bnb.nn.Linear8bitLt if quant == "llm-int8" else bnb.nn.Linear4bit
    assert any(isinstance(m, layer) for m in model.modules())
    params = SamplingParams(max_new_tokens=8, temperature=0.0)
    ref = generate(ref_model, tok, ["오늘은 날씨가"], params)[0].token_ids
    got = generate(model, tok, ["오늘은 날씨가"], params)[0].token_ids
    assert len(got) == len(ref) == 8
    # The first greedy token survives quantization (a sharpened head); later ones may drift for NF4.
    assert got[0] == ref[0]


# ----------------------------------------------------------------------------
# vLLM on the hf-llama export


def test_vllm_runs_the_hf_llama_export_to_our_greedy_tokens(model_dir, tmp_path):
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed on this machine")
    from kolm.export import export_model
    from kolm.infer.generate import SamplingParams, generate, generator_for
    from kolm.models.loading import load_model

    out = export_model(model_dir, "hf-llama", tmp_path / "hf-llama")
    model, tok = load_model(model_dir, device="cuda")
    prompt_ids = generator_for(model, tok).encode("오늘은 날씨가")  # BOS + the prompt, as our engine sees it
    ours = generate(model, tok, [prompt_ids], SamplingParams(max_new_tokens=8, temperature=0.0))[0].token_ids
    llm = vllm.LLM(model=str(out), dtype="float32", gpu_memory_utilization=0.2, enforce_eager=True)
    result = llm.generate(
        [vllm.TokensPrompt(prompt_token_ids=prompt_ids)], vllm.SamplingParams(max_tokens=8, temperature=0.0)
    )
    assert list(result[0].outputs[0].token_ids) == ours
