"""Every architecture through the same pretraining stage, loader and generation path; arch mix-ups as one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import ARCH_SHAPES, arch_overrides, make_data, make_tokenizer  # noqa: E402

SHAPES = ARCH_SHAPES


def _config(run_dir: Path, arch: str, *extra: str):
    from kolm.config import load_config

    steps = {"pretrain.max_steps": 4, "pretrain.save_every": 2, "pretrain.eval_every": 2}
    return load_config("tiny", [*arch_overrides(arch, **steps), *extra], run_dir)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("arch_runs")
    make_data(root / "data", n_train=120, n_val=20)
    make_tokenizer(root / "tokenizer")
    return root


@pytest.mark.parametrize("arch", list(SHAPES))
def test_pretrain_load_and_generate(arch, artifacts, tmp_path):
    import shutil

    from transformers import AutoConfig

    import kolm
    from kolm.infer.generate import SamplingParams, generate
    from kolm.models.registry import get_arch
    from kolm.run import run_stage

    shutil.copytree(artifacts, tmp_path, dirs_exist_ok=True)
    result = run_stage(_config(tmp_path, arch), "pretrain")
    out = tmp_path / "pretrain"
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert result.metrics["val_bpc"] > 0
    assert ("expert_load_entropy" in json.dumps(records)) == (arch == "deepseek")  # MoE load is logged
    assert "loss" in records[-1]  # ... before the loop's own record of the step, which stays the last line
    assert AutoConfig.from_pretrained(out / "final").model_type == get_arch(arch).model_type
    model, tok = kolm.load_model(tmp_path)
    done = generate(model, tok, ["오늘", "영화가 정말"], SamplingParams(max_new_tokens=4, temperature=0))
    assert all(len(c.token_ids) <= 4 for c in done)

    # `kolm finetune`'s classifier with LoRA on the architecture's own target modules (finetune.target_modules=all-linear).
    from kolm.finetune.trainer import finetune

    cfg = _config(
        tmp_path,
        arch,
        "finetune.max_steps=2",
        "finetune.eval_every=2",
        "finetune.batch_size=4",
        "finetune.seq_len=32",
        "finetune.classify.max_eval=8",
    )
    res = finetune(cfg.finetune, "classify", "lora", base_model=out / "final", out=tmp_path / "ft", seed=0)
    assert 0 < res.trainable_params < res.total_params and res.test["n"] == 8


def test_resuming_a_checkpoint_as_another_architecture_is_a_one_line_error(artifacts, tmp_path):
    import shutil

    from kolm.errors import CheckpointError
    from kolm.run import run_stage

    shutil.copytree(artifacts, tmp_path, dirs_exist_ok=True)
    run_stage(_config(tmp_path, "mamba2", "pretrain.max_steps=3"), "pretrain")
    with pytest.raises(CheckpointError, match="does not match the model"):
        run_stage(_config(tmp_path, "rwkv7"), "pretrain")


def test_unknown_arch_lists_the_choices():
    from kolm.config import load_config
    from kolm.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"model\.arch: 'mamba' is not allowed; choose one of \['gpt', 'mamba2', 'rwkv7', 'deepseek'\]",
    ):
        load_config("tiny", ["model.arch=mamba", "model.gpt=null"])


@pytest.mark.parametrize("arch", list(SHAPES))
def test_activation_checkpointing_gives_the_same_gradients(arch):
    import torch

    from kolm.config import load_config
    from kolm.models.registry import build_causal_lm

    cfg = load_config(
        "tiny", ["model.d_model=32", "model.n_layers=2", f"model.arch={arch}", "model.gpt=null", *SHAPES[arch]]
    )
    torch.manual_seed(0)
    model = build_causal_lm(cfg.model, 300).train()
    x = torch.randint(0, 300, (2, 24))
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.zero_grad()
        model(x, labels=x).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
