"""A fine-tuned classifier adapter loads through the one loader and predicts as it was trained to."""

import json

import pytest
import torch

from kolm.data.batching import collate, encode_classification
from kolm.evaluate.classifier import classifier_labels, predict_labels
from kolm.models.loading import load_model

TEXTS = ["영화 정말 좋다", "배우 연기 싫다 너무 별로", "이야기"]


@pytest.fixture()
def lora_classifier(tmp_path, tiny_model_dir, tiny_tokenizer):
    """A LoRA sequence-classification adapter with non-trivial weights, saved as kolm's fine-tuning saves it."""
    import peft
    from transformers import AutoModelForSequenceClassification

    from kolm.models.loading import write_task_info

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, pad_token_id=tiny_tokenizer.pad_token_id
    )
    model = peft.get_peft_model(
        base, peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():  # make the adapter and head non-trivial
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    adapter = tmp_path / "classify" / "adapter"
    model.save_pretrained(adapter)
    tiny_tokenizer.save_pretrained(adapter)
    write_task_info(adapter, "classify", "lora", ["부정", "긍정"], tiny_model_dir)
    return model, tmp_path / "classify"


def test_lora_classifier_adapter_round_trip(lora_classifier, tiny_tokenizer):
    model, task_dir = lora_classifier
    expected = predict_labels(model, tiny_tokenizer, TEXTS)
    loaded, tok = load_model(task_dir, task="classify")
    assert classifier_labels(loaded, task_dir) == ["부정", "긍정"]
    assert predict_labels(loaded, tok, TEXTS) == expected
    # batching with left padding gives the same answers as one at a time
    assert predict_labels(loaded, tok, TEXTS, batch_size=1) == expected


def test_predictions_match_the_finetuning_batches(lora_classifier, tiny_tokenizer):
    # eval's predictions and fine-tuning's scoring read the same left-padded batch
    model, _ = lora_classifier
    batch = collate(
        encode_classification(tiny_tokenizer, [(t, 0) for t in TEXTS], 16), tiny_tokenizer.pad_token_id, left=True
    )
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert predict_labels(model, tiny_tokenizer, TEXTS, max_length=16) == logits.argmax(-1).tolist()


def test_labels_fall_back_to_the_config(tmp_path, tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=3, id2label={0: "x", 1: "y", 2: "z"}
    )
    model.save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m", task="classify")
    assert classifier_labels(loaded, tmp_path / "m") == ["x", "y", "z"]
    assert (
        not (tmp_path / "m" / "kolm_task.json").exists()
        and json.loads((tmp_path / "m" / "config.json").read_text())["id2label"]
    )
