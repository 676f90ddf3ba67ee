"""Loading fine-tuned models (PEFT adapters) and labelled files; BLEU backend fallback."""

import json

import pytest
import torch

from kolm.errors import DataError
from kolm.evaluate import textmetrics
from kolm.evaluate.generation import predict_labels
from kolm.evaluate.sources import load_classifier, read_labelled


def test_lora_classifier_adapter_round_trip(tmp_path, tiny_model_dir, tiny_tokenizer):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    labels = ["부정", "긍정"]
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2, pad_token_id=tiny_tokenizer.pad_token_id)
    model = peft.get_peft_model(base, peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # make the adapter and head non-trivial
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    adapter = tmp_path / "classify" / "adapter"
    model.save_pretrained(adapter)
    tiny_tokenizer.save_pretrained(adapter)
    (adapter / "kolm_task.json").write_text(json.dumps({"task": "classify", "labels": labels, "base_model": str(tiny_model_dir)}), encoding="utf-8")

    texts = ["영화 정말 좋다", "배우 연기 싫다 너무 별로", "이야기"]
    expected = predict_labels(model, tiny_tokenizer, texts)
    loaded, tok, names = load_classifier(tmp_path / "classify")
    assert names == labels
    assert predict_labels(loaded, tok, texts) == expected
    # batching with left padding gives the same answers as one at a time
    assert predict_labels(loaded, tok, texts, batch_size=1) == expected


def test_read_labelled_names_indices_and_errors(tmp_path):
    f = tmp_path / "nsmc.tsv"
    f.write_text("id\tdocument\tlabel\n1\t좋아요\t1\n2\t별로\t0\n", encoding="utf-8")
    pairs, names = read_labelled(f, ["부정", "긍정"], "document", "label")
    assert pairs == [("좋아요", "긍정"), ("별로", "부정")] and names == ["부정", "긍정"]
    with pytest.raises(DataError, match="column 'text' not found"):
        read_labelled(f, ["부정", "긍정"])
    with pytest.raises(DataError, match="outside the declared set"):
        read_labelled(f, ["yes"], "document", "label")


def test_bleu_falls_back_to_kiwi_without_mecab(monkeypatch):
    monkeypatch.setattr(textmetrics, "_mecab_works", lambda: False)
    out = textmetrics.bleu(["오늘 날씨가 맑다"], ["오늘 날씨가 맑다"], tokenize="auto")
    assert out["tokenize"] == "kiwi" and out["bleu"] == pytest.approx(100.0)


def test_classifier_encoding_matches_finetuning(tiny_tokenizer):
    data = pytest.importorskip("kolm.finetune.data")
    from kolm.evaluate.generation import encode_for_classifier

    texts = ["영화 정말 좋다", "배우 연기 싫다 " * 20]
    rows = data.encode_classification(tiny_tokenizer, [(t, 0) for t in texts], 16)
    assert [encode_for_classifier(tiny_tokenizer, t, 16) for t in texts] == [r["input_ids"] for r in rows]
