"""Fine-tuning end to end on a tiny model: adapters in PEFT format, metrics, merge parity, compare."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from kolm.config import load_config
from kolm.errors import KolmError
from kolm.finetune.merge import merge_adapter
from kolm.finetune.trainer import finetune
from kolm.models.loading import load_model


def _cfg(tmp_path, *over):
    return load_config(
        "tiny",
        [
            "finetune.max_steps=6",
            "finetune.eval_every=3",
            "finetune.batch_size=8",
            "finetune.seq_len=48",
            "finetune.classify.max_eval=40",
            "device=cpu",
            *over,
        ],
        run_dir=tmp_path / "run",
    )


def test_lora_classifier_writes_peft_adapter_and_scores(tmp_path, tiny_base):
    cfg = _cfg(tmp_path)
    res = finetune(cfg.finetune, "classify", "lora", base_model=tiny_base, out=tmp_path / "classify", seed=cfg.seed)
    adapter = tmp_path / "classify" / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert (adapter / "tokenizer.json").exists()
    assert 0 < res.trainable_params < res.total_params and res.steps == 6
    assert set(res.test) >= {"accuracy", "macro_f1", "confusion_matrix"} and res.test["n"] == 40
    ev = json.loads((tmp_path / "classify" / "eval.json").read_text(encoding="utf-8"))
    assert ev["method"] == "lora" and ev["test"] == res.test
    pad = ev["padding_share"]  # batches by length (the default) pad less than random batches of the same rows
    assert pad["grouped"] is True and 0 <= pad["by_length"] < pad["random"] < 1
    # The reported test scores are those of the saved adapter: predict the test split again from disk.
    from kolm.data.batching import encode_classification
    from kolm.data.tasks import load_classification

    tok = AutoTokenizer.from_pretrained(adapter)
    data = load_classification(cfg.finetune.classify, seed=cfg.seed)
    rows = encode_classification(tok, data.test, cfg.finetune.seq_len)
    model, _ = load_model(adapter, task="classify", base_model=tiny_base)
    preds = []
    for i in range(0, len(rows), 32):  # left-padded batches, as the trainer scores them
        chunk = rows[i : i + 32]
        width = max(len(r["input_ids"]) for r in chunk)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(r["input_ids"])) + r["input_ids"] for r in chunk])
        mask = torch.tensor([[0] * (width - len(r["input_ids"])) + [1] * len(r["input_ids"]) for r in chunk])
        with torch.no_grad():
            preds += model(input_ids=ids, attention_mask=mask).logits.argmax(-1).tolist()
    gold = [label for _, label in data.test]
    cm = [[sum(1 for g, p in zip(gold, preds) if (g, p) == (i, j)) for j in range(2)] for i in range(2)]
    assert ev["test"]["confusion_matrix"] == cm
    assert ev["test"]["accuracy"] == pytest.approx(sum(g == p for g, p in zip(gold, preds)) / len(gold))
    assert ev["test"]["accuracy"] == pytest.approx((cm[0][0] + cm[1][1]) / 40)
    rows = [json.loads(x) for x in (tmp_path / "classify" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any("val_accuracy" in r for r in rows) and any("loss" in r for r in rows)


def test_sft_adapter_merges_to_identical_logits(tmp_path, tiny_base):
    cfg = _cfg(tmp_path, "finetune.lr=0.01")
    finetune(cfg.finetune, "sft", "lora", base_model=tiny_base, out=tmp_path / "sft", seed=cfg.seed)
    adapter = tmp_path / "sft" / "adapter"
    peft_model, _ = load_model(adapter, base_model=tiny_base)
    merged_dir = merge_adapter(adapter, tmp_path / "merged", tiny_base)
    from transformers import AutoModelForCausalLM

    import kolm.models.registry  # noqa: F401

    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    ids = torch.randint(3, 100, (2, 12))
    with torch.no_grad():
        a, b, c = peft_model(input_ids=ids).logits, merged(input_ids=ids).logits, base(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-4)  # the adapter did change the model


def test_adapter_on_wrong_base_is_a_clear_error(tmp_path, tiny_base):
    cfg = _cfg(tmp_path)
    finetune(cfg.finetune, "sft", "lora", base_model=tiny_base, out=tmp_path / "sft", seed=cfg.seed)
    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other"
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    ).save_pretrained(other)
    with pytest.raises(KolmError, match="does not fit the base model"):
        load_model(tmp_path / "sft" / "adapter", base_model=other)


def test_missing_base_model_is_a_clear_error(tmp_path):
    with pytest.raises(KolmError, match="base model not found"):
        finetune(_cfg(tmp_path).finetune, "classify", "lora", base_model=tmp_path / "nothing", out=tmp_path / "out")


def test_compare_runs_each_method_in_its_own_process_and_writes_the_table(tmp_path, tiny_base):
    from kolm.run import run_stage

    cfg = _cfg(
        tmp_path,
        f"finetune.base_model={tiny_base}",
        "finetune.max_steps=2",
        "finetune.eval_every=2",
        "finetune.compare_methods=[lora, ia3]",
        "finetune.classify.max_eval=16",
    )
    result = run_stage(cfg, "finetune", action="compare")
    out = tmp_path / "run" / "finetune" / "compare"
    table = (out / "compare.md").read_text(encoding="utf-8")
    assert "| classify | lora |" in table and "| classify | ia3 |" in table
    assert (out / "compare.png").stat().st_size > 5000
    rows = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in rows] == ["lora", "ia3"] and all(r["peak_memory_mb"] >= 0 for r in rows)
    assert rows[1]["trainable_params"] < rows[0]["trainable_params"]
    assert set(result.metrics) == {"lora.test_accuracy", "ia3.test_accuracy"}
