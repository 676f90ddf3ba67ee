"""Text generation for evaluation (HF `generate()`), and classifier predictions.

Prompts are generated one at a time: no padding, so no left/right padding
subtleties across architectures, and the tiny models are fast enough. Chat
models (fine-tuned with a chat template) get their prompt wrapped in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_prompt", "generate", "encode_for_classifier", "predict_labels"]


def format_prompt(tokenizer: Any, prompt: str, chat: bool) -> str:
    """The prompt as the model was trained to see it: chat template for chat models, plain text otherwise."""
    if chat and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return prompt


def generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 0.8,
    top_p: float = 0.95,
    device: str = "cpu",
    max_context: int = 0,
    add_bos: bool = True,
) -> str:
    """The model's continuation of `prompt` (new text only, special tokens removed).

    `add_bos` prepends BOS as pretraining documents begin with it; chat prompts
    (already rendered by the chat template, as in fine-tuning) are left as they are.
    """
    import torch

    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if add_bos and tokenizer.bos_token_id is not None and (not ids or ids[0] != tokenizer.bos_token_id):
        ids = [tokenizer.bos_token_id, *ids]
    if max_context:  # leave room for the answer inside the model's context
        ids = ids[-max(1, max_context - max_new_tokens) :]
    input_ids = torch.tensor([ids], device=device)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if do_sample:
        kwargs.update(temperature=max(temperature, 1e-5), top_p=top_p)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pad_token_id=pad, **kwargs)
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()


def encode_for_classifier(tokenizer: Any, text: str, max_length: int) -> list[int]:
    """Token ids exactly as fine-tuning encoded them: the text without special tokens, then EOS (the pooled token)."""
    ids = tokenizer.encode(text, add_special_tokens=False)[: max_length - 1]
    return ids + [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


def predict_labels(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 128, batch_size: int = 32, device: str = "cpu") -> list[int]:
    """Argmax class indices of a sequence classifier (left-padded batches, as in fine-tuning)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    preds: list[int] = []
    for i in range(0, len(texts), batch_size):
        rows = [encode_for_classifier(tokenizer, t, max_length) for t in texts[i : i + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)  # (B, T) left-padded
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits  # (B, num_labels)
        preds += logits.argmax(-1).tolist()
    return preds
