"""TRL's SFTTrainer trains KolmGPT (loaded through AutoModelForCausalLM) with a LoRA adapter."""

from __future__ import annotations

import pytest


def test_trl_sft_one_step(model_dir, tmp_path):
    trl = pytest.importorskip("trl")
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import kolm.models.registry  # noqa: F401

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    data = Dataset.from_list(
        [{"text": t} for t in ["오늘은 날씨가 맑다.", "서울의 봄은 짧다.", "책을 읽었다.", "김치찌개를 먹었다."]]
    )
    args = trl.SFTConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        max_length=32,
        use_cpu=True,
        dataloader_num_workers=0,
        bf16=False,
    )
    peft_cfg = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"
    )
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=peft_cfg)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)
    assert all("lora_" in n for n in before)
