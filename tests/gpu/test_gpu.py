"""The CUDA branches: bf16 autocast, CUDA RNG in checkpoints, MFU, FSDP2 mixed precision, QLoRA, peak memory.

Marked `gpu` (a bare `pytest` deselects them) and skipped without CUDA, so a
machine with a GPU runs all of them with one command:

    pytest -m gpu tests/gpu
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "models"))  # kolm_testkit: tiny KolmGPT configs, a Korean BPE with a chat template
sys.path.insert(0, str(TESTS / "train"))  # train_helpers: a curated-data folder and a tokenizer for pretraining
from kolm_testkit import make_config  # noqa: E402
from kolm_testkit import make_tokenizer as make_chat_tokenizer  # noqa: E402
from train_helpers import make_data, make_tokenizer  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.timeout(600),
]


def _model(vocab: int = 512, **shape):
    """A KolmGPT causal LM (fp32, on the CPU), seeded."""
    from kolm.models.gpt import KolmGPTForCausalLM

    kw = dict(d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=384, max_seq_len=256)
    kw.update(shape)
    torch.manual_seed(0)
    return KolmGPTForCausalLM(make_config(vocab_size=vocab, **kw))


def _batch(vocab: int, batch: int = 8, seq: int = 128, seed: int = 0, device: str = "cuda") -> dict[str, torch.Tensor]:
    ids = torch.randint(3, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed)).to(device)
    return {"input_ids": ids, "labels": ids}


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().cpu().clone() for n, p in model.named_parameters()}


# ----------------------------------------------------------------------------
# bf16 autocast


def test_bf16_autocast_training_step_is_finite_and_close_to_fp32():
    from kolm.train.loop import LoopSettings, autocast_context, resolve_precision, train
    from kolm.train.optim import build_adamw

    if torch.cuda.is_bf16_supported():
        assert resolve_precision("auto", "cuda") == "bf16"
    model = _model().cuda().train()
    batch = _batch(512)
    with torch.no_grad():
        fp32 = model(**batch)
        with autocast_context("bf16", "cuda"):
            bf16 = model(**batch)
    assert fp32.logits.dtype == torch.float32 and bf16.logits.dtype == torch.bfloat16  # autocast is really on
    assert math.isfinite(float(bf16.loss))
    assert float(bf16.loss) == pytest.approx(float(fp32.loss), rel=2e-2)

    # Optimizer steps through the training loop in bf16: finite losses, the weights move and stay fp32.
    before = _params(model)
    state = train(
        model,
        itertools.repeat(batch),
        build_adamw(model, lr=1e-3),
        settings=LoopSettings(max_steps=3, precision="bf16", log_every=1),
        device="cuda",
    )
    assert state.step == 3 and math.isfinite(state.loss)
    assert state.loss < float(fp32.loss)  # the same batch three times: the loss goes down
    assert all(p.dtype == torch.float32 for p in model.parameters())
    after = _params(model)
    assert all(not torch.equal(before[n], after[n]) for n in before)


# ----------------------------------------------------------------------------
# CUDA RNG state in checkpoints


def test_checkpoint_saves_and_restores_the_cuda_rng(tmp_path):
    from kolm.train.checkpoint import Checkpointer, capture_rng, restore_rng

    torch.cuda.manual_seed_all(123)
    torch.empty(1, device="cuda")  # CUDA initialised: capture_rng records its state only then
    state = capture_rng()
    assert "cuda" in state and len(state["cuda"]) == torch.cuda.device_count()
    expected = torch.rand(8, device="cuda")
    torch.rand(1000, device="cuda")  # move the generator on
    restore_rng(state)
    assert torch.equal(torch.rand(8, device="cuda"), expected)

    # The same through a checkpoint folder: rng.pt holds the CUDA state and load() puts it back.
    model = torch.nn.Linear(4, 4).cuda()
    ckpt = Checkpointer(tmp_path / "checkpoints")
    path = ckpt.save(1, model)
    assert "cuda" in torch.load(path / "rng.pt", weights_only=False)
    after_save = torch.rand(8, device="cuda")
    dropped = torch.nn.functional.dropout(torch.ones(64, device="cuda"), 0.5)  # dropout draws from it too
    torch.rand(1000, device="cuda")
    ckpt.load(path, model)
    assert torch.equal(torch.rand(8, device="cuda"), after_save)
    assert torch.equal(torch.nn.functional.dropout(torch.ones(64, device="cuda"), 0.5), dropped)


# ----------------------------------------------------------------------------
# MFU


def test_training_loop_reports_mfu_on_cuda(tmp_path):
    from kolm.models.registry import flops_per_token
    from kolm.train.loop import LoopSettings, train
    from kolm.train.metrics import mfu, peak_flops
    from kolm.train.optim import build_adamw

    peak = peak_flops("cuda")
    if peak is None:
        pytest.skip(f"no bf16 peak known for {torch.cuda.get_device_name(0)} (kolm.train.metrics._PEAK_BF16)")
    assert mfu(1e6, 1e6, peak) == pytest.approx(1e12 / peak)
    model = _model(vocab=4096, d_model=512, n_layers=4, n_heads=8, n_kv_heads=4, ffn_dim=1536).cuda()
    seq = 256
    fpt = flops_per_token(model.config, seq)
    settings = LoopSettings(max_steps=6, precision="bf16", log_every=1, flops_per_token=fpt, peak_flops=peak)
    metrics = tmp_path / "metrics.jsonl"
    train(
        model,
        itertools.repeat(_batch(4096, 16, seq)),
        build_adamw(model, 1e-3),
        settings=settings,
        device="cuda",
        metrics_path=metrics,
    )
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all("mfu" in r for r in rows)
    for r in rows[1:]:  # step 1 carries the CUDA start-up
        assert 0 < r["mfu"] < 1
        assert r["mfu"] == pytest.approx(r["tok_per_s"] * fpt / peak, abs=2e-4)  # both rounded in the record


def test_pretrain_stage_on_cuda_reports_mfu_and_checkpoints_the_cuda_rng(tmp_path):
    from kolm.config import load_config
    from kolm.run import run_stage
    from kolm.train.metrics import peak_flops

    run_dir = tmp_path / "run"
    make_data(run_dir / "data")
    make_tokenizer(run_dir / "tokenizer")
    cfg = load_config(
        "tiny",
        [
            "device=cuda",
            "model.d_model=256",
            "model.n_layers=4",
            "pretrain.max_steps=8",
            "pretrain.warmup_steps=1",
            "pretrain.seq_len=128",
            "pretrain.batch_size=16",
            "pretrain.log_every=1",
            "pretrain.eval_every=4",
            "pretrain.eval_batches=1",
            "pretrain.save_every=4",
            "pretrain.sample_max_new_tokens=4",
            "pretrain.precision=auto",
        ],
        run_dir=run_dir,
    )
    run_stage(cfg, "pretrain")
    out = run_dir / "pretrain"
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["status"] == "done"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert all(r["peak_mem_mb"] > 0 for r in rows)  # the CUDA allocator's peak
    if peak_flops("cuda") is not None:
        assert all(r["mfu"] > 0 for r in rows[1:])
    rng = torch.load(out / "checkpoints" / "step-8" / "rng.pt", weights_only=False)
    assert "cuda" in rng
    from transformers import AutoModelForCausalLM

    import kolm.models.registry  # noqa: F401

    final = AutoModelForCausalLM.from_pretrained(out / "final")
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in final.parameters())


# ----------------------------------------------------------------------------
# FSDP2 with the bf16 mixed-precision policy, one process, NCCL


def _full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The gathered, unsharded state dict (collective), copied so later steps cannot change it."""
    from kolm.train.checkpoint import model_state

    return {k: v.clone() for k, v in model_state(model).items()}


def test_fsdp2_bf16_mixed_precision_trains_and_checkpoints(nccl_world_of_one, tmp_path):
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from kolm.train import distributed as dist
    from kolm.train.checkpoint import Checkpointer
    from kolm.train.loop import LoopSettings, train
    from kolm.train.optim import build_adamw

    assert dist.is_distributed() and dist.world_size() == 1 and dist.is_main()
    assert torch.distributed.get_backend() == "nccl"
    reference = _model().cuda().train()  # the same weights, unsharded, fp32
    model = _model().cuda().train()
    model = dist.wrap_model(model, "fsdp", "cuda:0", precision="bf16")
    assert isinstance(model, FSDPModule)
    assert all(isinstance(b, FSDPModule) for b in dist.transformer_blocks(model))  # every block sharded on its own
    assert all(isinstance(p, DTensor) and p.dtype == torch.float32 for p in model.parameters())  # fp32 shards

    batch = _batch(512)
    out = model(**batch)  # no autocast: the policy gathers parameters in bf16
    assert out.logits.dtype == torch.bfloat16
    with torch.no_grad():
        ref_loss = float(reference(**batch).loss)
    loss = float(out.loss.detach())
    assert math.isfinite(loss) and loss == pytest.approx(ref_loss, rel=2e-2)
    out.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)  # reduced in fp32 onto fp32 shards
    model.zero_grad(set_to_none=True)

    # The training loop (gradient accumulation with FSDP2's sync switch, clipping of sharded gradients).
    before = _full_state(model)
    optimizer = build_adamw(model, lr=1e-3)
    settings = LoopSettings(max_steps=2, grad_accum=2, grad_clip=1.0, precision="bf16", log_every=1)
    state = train(model, itertools.repeat(batch), optimizer, settings=settings, device="cuda:0")
    assert state.step == 2 and math.isfinite(state.loss) and state.loss < ref_loss
    trained = _full_state(model)
    assert set(trained) == set(before) and all(t.device.type == "cpu" for t in trained.values())
    assert any(not torch.equal(before[k], trained[k]) for k in before)

    # A checkpoint of the sharded model (gathered to full state dicts) loads back exactly.
    ckpt = Checkpointer(tmp_path / "checkpoints", is_main=dist.is_main())
    path = ckpt.save(2, model, optimizer)
    train(
        model, itertools.repeat(batch), optimizer, settings=LoopSettings(max_steps=1, precision="bf16"), device="cuda:0"
    )
    assert any(not torch.equal(trained[k], v) for k, v in _full_state(model).items())
    ckpt.load(path, model, optimizer)
    assert all(torch.equal(trained[k], v) for k, v in _full_state(model).items())


# ----------------------------------------------------------------------------
# Fine-tuning on CUDA: QLoRA, peak memory


@pytest.fixture
def base_dir(tmp_path):
    """A tiny KolmGPT base model dir with a chat-template tokenizer, as `kolm pretrain` leaves one."""
    from kolm.models.gpt import KolmGPTForCausalLM

    tok = make_chat_tokenizer()
    torch.manual_seed(0)
    model = KolmGPTForCausalLM(
        make_config(
            vocab_size=len(tok),
            d_model=64,
            ffn_dim=256,
            max_seq_len=128,
            tie_word_embeddings=True,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
    )
    out = tmp_path / "base"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _finetune(tmp_path, base: Path, task: str, method: str) -> dict:
    """`kolm finetune` (the stage) of `task` with `method` on `base`, on CUDA; returns its eval.json."""
    from kolm.config import load_config
    from kolm.run import run_stage

    cfg = load_config(
        "tiny",
        [
            "device=cuda",
            f"finetune.base_model={base}",
            f"finetune.tasks=[{task}]",
            f"finetune.method={method}",
            "finetune.max_steps=4",
            "finetune.eval_every=2",
            "finetune.warmup_steps=1",
            "finetune.batch_size=16",
            "finetune.seq_len=64",
            "finetune.classify.max_train=128",
            "finetune.classify.max_eval=32",
            "finetune.sft.max_train=64",
        ],
        run_dir=tmp_path / "run",
    )
    run_stage(cfg, "finetune")
    return json.loads((tmp_path / "run" / "finetune" / task / "eval.json").read_text(encoding="utf-8"))


def test_qlora_trains_lora_adapters_on_a_4bit_base(tmp_path, base_dir, monkeypatch):
    bnb = pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install bitsandbytes)")
    import peft

    wrapped = []  # the model handed to PEFT: QLoRA's base must be quantized by then
    real_get_peft_model = peft.get_peft_model

    def spy(model, *args, **kwargs):
        wrapped.append(model)
        return real_get_peft_model(model, *args, **kwargs)

    monkeypatch.setattr(peft, "get_peft_model", spy)
    ev = _finetune(tmp_path, base_dir, "sft", "qlora")
    assert len(wrapped) == 1
    four_bit = [n for n, m in wrapped[0].named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit, "finetune.method=qlora trained on a full-precision base: no bitsandbytes Linear4bit layer"
    assert ev["method"] == "qlora" and ev["steps"] == 4 and math.isfinite(ev["validation"]["loss"])
    assert 0 < ev["trainable_params"] < ev["total_params"]
    adapter = tmp_path / "run" / "finetune" / "sft" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    assert json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["peft_type"] == "LORA"


def test_finetune_measures_the_cuda_peak_memory_of_its_own_run(tmp_path, base_dir):
    big = torch.empty(2**31, dtype=torch.uint8, device="cuda")  # a 2 GiB peak before fine-tuning starts
    del big
    ev = _finetune(tmp_path, base_dir, "classify", "lora")
    assert ev["steps"] == 4
    # Measured by the CUDA allocator from the run's own start: the earlier 2 GiB are not counted, the run's
    # activations and optimizer state are.
    assert 0 < ev["peak_memory_mb"] < 1024
