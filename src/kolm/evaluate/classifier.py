"""A fine-tuned sequence classifier on labelled texts: its label names and its predictions.

Texts are encoded and left-padded by `kolm.data.batching`, exactly as fine-tuning
encoded and scored them, so the accuracy measured here is the one fine-tuning
reported on the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kolm.data.batching import encode_for_classifier, pad_rows, pad_token_id

__all__ = ["classifier_labels", "predict_labels"]


def classifier_labels(model: Any, model_dir: str | Path) -> list[str]:
    """Label names of a classifier: those recorded with it (`kolm_task.json`), else its config's id2label."""
    from kolm.models.loading import find_model_dir, task_info

    labels = task_info(find_model_dir(model_dir)).get("labels")
    if not labels:
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return [str(x) for x in labels]


def predict_labels(
    model: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 128, batch_size: int = 32
) -> list[int]:
    """Argmax class indices of a sequence classifier for `texts`, in left-padded batches."""
    import torch

    device = next(model.parameters()).device
    pad = pad_token_id(tokenizer)
    preds: list[int] = []
    for i in range(0, len(texts), batch_size):
        ids, mask = pad_rows(
            [encode_for_classifier(tokenizer, t, max_length) for t in texts[i : i + batch_size]], pad, left=True
        )
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (B, num_labels)
        preds += logits.argmax(-1).tolist()
    return preds
