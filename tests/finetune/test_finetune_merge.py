"""`kolm merge` through the one loader: a classification adapter keeps its head and labels."""

from __future__ import annotations

import pytest
import torch

from kolm.config import load_config
from kolm.errors import KolmError
from kolm.finetune.merge import merge_adapter
from kolm.finetune.trainer import finetune
from kolm.models.loading import load_model, task_info


def test_classifier_adapter_merges_with_its_labels(tmp_path, tiny_base):
    cfg = load_config(
        "tiny",
        [
            "finetune.max_steps=2",
            "finetune.eval_every=2",
            "finetune.batch_size=8",
            "finetune.seq_len=48",
            "finetune.classify.max_eval=8",
            "finetune.lr=0.01",
            "device=cpu",
        ],
        run_dir=tmp_path / "run",
    )
    finetune(cfg.finetune, "classify", "lora", base_model=tiny_base, out=tmp_path / "classify", seed=cfg.seed)
    merged_dir = merge_adapter(tmp_path / "classify", tmp_path / "merged")  # the task dir is enough; base as recorded
    assert task_info(merged_dir)["labels"] == ["부정", "긍정"] and "base_model" not in task_info(merged_dir)
    adapter, tok = load_model(tmp_path / "classify", task="classify")
    merged, _ = load_model(merged_dir, task="classify")
    ids = torch.tensor([tok.encode("정말 좋은 영화", add_special_tokens=False) + [tok.eos_token_id]])
    with torch.no_grad():
        assert torch.allclose(adapter(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-5)
    with pytest.raises(KolmError, match="not a PEFT adapter"):
        merge_adapter(merged_dir, tmp_path / "again")
