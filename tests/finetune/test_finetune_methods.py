"""Each PEFT method trains one step on a tiny model and changes only its trainable parameters."""

from __future__ import annotations

import pytest
import torch

from kolm.errors import KolmError
from kolm.finetune.config import FinetuneConfig
from kolm.finetune.methods import check_method_available, peft_config

METHODS = ["full", "lora", "dora", "waveft", "ia3", "prompt_tuning"]


def tiny(task: str):
    """A tiny KolmGPT with a causal-LM or a classification head."""
    from kolm.model_config import GPTConfig, ModelConfig
    from kolm.models.gpt import KolmGPTForCausalLM, KolmGPTForSequenceClassification
    from kolm.models.registry import hf_config

    torch.manual_seed(0)
    cfg = hf_config(
        ModelConfig(d_model=32, n_layers=2, max_seq_len=64, gpt=GPTConfig(n_heads=4, n_kv_heads=2, ffn_dim=64)),
        vocab_size=64,
        bos_id=1,
        eos_id=2,
        pad_id=0,
    )
    cfg.num_labels = 2
    return (KolmGPTForSequenceClassification if task == "classify" else KolmGPTForCausalLM)(cfg)


@pytest.mark.parametrize("task", ["classify", "sft"])
@pytest.mark.parametrize("method", METHODS)
def test_one_step_changes_only_trainable_parameters(method, task):
    import peft

    model = tiny(task)
    pc = peft_config(method, task, FinetuneConfig(waveft_n_frequency=16, prompt_tokens=4), model.config)
    if pc is not None:
        model = peft.get_peft_model(model, pc)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing to train"
    if method != "full":
        assert len(trainable) < len(before)
    ids = torch.randint(1, 64, (2, 10))
    if task == "classify":
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1]))
    else:
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    out.loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "the step changed nothing"
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:3]}"


def test_qlora_without_gpu_is_a_clear_error():
    with pytest.raises(KolmError, match="QLoRA"):
        check_method_available("qlora", "cpu")
    check_method_available("lora", "cpu")  # every other method runs anywhere
