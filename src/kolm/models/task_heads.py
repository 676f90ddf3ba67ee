"""Per-token heads over any causal LM: token classification (NER) and start/end spans (extractive QA).

`SequenceClassifierHead` (heads.py) pools the last real token, which suits
sentence tasks (and regression with one output). Token- and span-level tasks
need every position, so `TaskHeadModel` runs the base model of a causal LM,
kolm's or any Hugging Face one (`lm.base_model`: embeddings, blocks, final
norm, returning `last_hidden_state`), and puts one linear `head` on each
position:

* `kind="token"`: `num_labels` tag logits per token, cross-entropy on labels
  (-100 ignored);
* `kind="span"`: two logits per token, the answer's start and end; the loss is
  the mean of the start and end cross-entropies (SQuAD's recipe).

The wrapped LM stays a plain causal LM, so PEFT adapts its linear layers by
name (the head trains as `modules_to_save`), and a fully fine-tuned model is
saved as that LM's own model dir plus `task_head.safetensors`. The LM's
`lm_head` is kept (it is tied to the embedding in most models) but unused.
Decoder-only models see only the left context: QA inputs put the question
before the context, and a token's tag is decided from the text up to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import QuestionAnsweringModelOutput, TokenClassifierOutput

__all__ = ["TaskHeadModel", "HEAD_FILE", "KINDS"]

HEAD_FILE = "task_head.safetensors"
KINDS = ("token", "span")


class TaskHeadModel(nn.Module):
    """A causal LM's base model with a per-token linear head (`kind` "token" or "span")."""

    def __init__(self, lm: nn.Module, kind: str, num_labels: int = 2):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown head kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.num_labels = 2 if kind == "span" else num_labels
        self.lm = lm
        self.config = lm.config  # what PEFT and the trainer read (hidden size, layers, model type)
        width = getattr(lm.config, "hidden_size", None) or lm.config.d_model
        self.head = nn.Linear(width, self.num_labels)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> TokenClassifierOutput | QuestionAnsweringModelOutput:
        """Token logits (B, T, num_labels), or start/end logits (B, T) each; the loss when targets are given."""
        base = self.lm.base_model
        out = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        h = out.last_hidden_state  # (B, T, C)
        logits = self.head(h.to(self.head.weight.dtype)).float()  # (B, T, K)
        if self.kind == "token":
            loss = None
            if labels is not None:
                loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.to(logits.device).view(-1))
            return TokenClassifierOutput(loss=loss, logits=logits)
        start, end = logits.unbind(-1)  # (B, T) each
        if attention_mask is not None:  # padding can never be an answer boundary
            start = start.masked_fill(attention_mask == 0, -1e4)
            end = end.masked_fill(attention_mask == 0, -1e4)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = (
                F.cross_entropy(start, start_positions.to(start.device))
                + F.cross_entropy(end, end_positions.to(end.device))
            ) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end)

    def save_pretrained(self, path: str | Path, **kwargs: Any) -> None:
        """The LM as its own model dir, plus the head's weights in `task_head.safetensors`."""
        from safetensors.torch import save_file

        path = Path(path)
        self.lm.save_pretrained(path, **kwargs)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(path / HEAD_FILE))

    def load_head(self, path: str | Path) -> None:
        """Load `task_head.safetensors` from a model dir written by `save_pretrained`."""
        from safetensors.torch import load_file

        state = load_file(str(Path(path) / HEAD_FILE))
        if state["weight"].shape != self.head.weight.shape:
            raise ValueError(
                f"the head in {path} has shape {tuple(state['weight'].shape)}, not {tuple(self.head.weight.shape)}"
            )
        self.head.load_state_dict(state)
