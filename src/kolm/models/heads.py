"""The heads every kolm architecture shares, and what recurrent architectures add for generation.

An architecture's model classes mix these in over its own `PreTrainedModel`
base; the mixins read only `self.model` (the base model: embeddings, blocks,
final norm, returning `last_hidden_state` and `cache`), `self.lm_head` or
`self.score`, and the config. So GPT, DeepSeek, Mamba-2 and RWKV-7 differ in
their blocks and inference state, never in how logits, losses or pooled
classifier outputs are computed.

* `CausalLMHead`: next-token logits (of the last `logits_to_keep` positions
  when asked), the shifted cross-entropy, plus an architecture's extra loss
  (`extra_loss()`, e.g. the MoE balance loss).
* `SequenceClassifierHead`: a linear `score` on the last real token, pad-aware
  with left, right or no padding.
* `RecurrentGeneration`: `new_cache`, `new_slot_state` and
  `prepare_inputs_for_generation` for models whose state is a fixed-size
  `RecurrentState` instead of a growing key/value cache.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast, SequenceClassifierOutputWithPast

from kolm.models.cache import RecurrentState

__all__ = ["CausalLMHead", "SequenceClassifierHead", "RecurrentGeneration", "causal_lm_loss"]


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of position t predicting labels[t+1]; labels are shifted (cheap), logits are not."""
    targets = F.pad(labels[:, 1:], (0, 1), value=-100).to(logits.device)  # (B, T)
    reduction = "mean" if num_items is None else "sum"
    loss = F.cross_entropy(
        logits.float().view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction=reduction
    )
    return loss if num_items is None else loss / num_items


class CausalLMHead:
    """Next-token head over `self.model`; works with `generate()`, pipelines, PEFT and TRL.

    An architecture names its base model class in `base_model_class`; the head
    builds it, then the output projection (tied to the input embedding when
    the config says so), then runs `post_init`.
    """

    base_model_class: type[nn.Module]
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: Any):
        super().__init__(config)
        self.model = self.base_model_class(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def extra_loss(self) -> torch.Tensor | None:
        """A loss the architecture adds to the next-token loss (None: nothing)."""
        return None

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Any | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits (B, T, V) (or of the last `logits_to_keep` positions) and, given labels, the mean next-token loss.

        Labels use -100 for ignored positions; pass `num_items_in_batch` to
        sum-and-divide across gradient-accumulation micro-batches instead.
        """
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        h = out.last_hidden_state
        if isinstance(logits_to_keep, int):
            h = h[:, -logits_to_keep:] if logits_to_keep else h
        else:
            h = h[:, logits_to_keep]
        logits = self.lm_head(h)  # (B, T', V)
        loss = None
        if labels is not None:
            loss = causal_lm_loss(logits, labels, kwargs.get("num_items_in_batch"))
            if (extra := self.extra_loss()) is not None:
                loss = loss + extra
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache)


class SequenceClassifierHead:
    """A linear `score` head on the last real token of `self.model`'s output (pad-aware; left or right padding)."""

    base_model_class: type[nn.Module]

    def __init__(self, config: Any):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = self.base_model_class(config)
        self.score = nn.Linear(config.d_model, config.num_labels, bias=False)
        self.post_init()

    def _last_token(
        self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, B: int, T: int, device: torch.device
    ) -> torch.Tensor:
        """Index of the last real token of each row (B,)."""
        if attention_mask is not None:
            real = attention_mask[:, -T:].bool()
        elif input_ids is not None and self.config.pad_token_id is not None:
            real = input_ids != self.config.pad_token_id
        else:
            return torch.full((B,), T - 1, device=device)
        # Rightmost real position: works for left padding, right padding and none.
        idx = torch.arange(T, device=device).expand(B, T)
        return torch.where(real.to(device), idx, -1).max(-1).values.clamp(min=0)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutputWithPast:
        """Logits (B, num_labels); loss (cross-entropy, MSE for one label, BCE for multi-label) when labels given."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=False,
        )
        h = out.last_hidden_state  # (B, T, C)
        B, T = h.shape[:2]
        last = self._last_token(input_ids, attention_mask, B, T, h.device)
        logits = self.score(h[torch.arange(B, device=h.device), last])  # (B, num_labels)
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            problem = self.config.problem_type
            if problem is None:
                problem = (
                    "regression"
                    if self.num_labels == 1
                    else "single_label_classification"
                    if labels.dtype in (torch.long, torch.int)
                    else "multi_label_classification"
                )
            if problem == "regression":
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
            elif problem == "single_label_classification":
                loss = F.cross_entropy(logits.float(), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return SequenceClassifierOutputWithPast(loss=loss, logits=logits)


class RecurrentGeneration:
    """Generation plumbing of models whose inference state is a fixed-size `RecurrentState` (`self.model.new_state`)."""

    def new_cache(
        self, batch_size: int, max_len: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> RecurrentState:
        """An empty inference state for `batch_size` rows; its size does not depend on `max_len`."""
        return self.model.new_state(batch_size, device, dtype)

    def new_slot_state(
        self, slots: int, max_len: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> RecurrentState:
        """The continuous-batching state: `slots` rows, none active yet."""
        state = self.model.new_state(slots, device, dtype)
        state.rows, state.lengths = 0, []
        return state

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, cache: Any | None = None, **kwargs: Any) -> dict:
        """For `generate()`: the whole prompt first, then only the newest token against the state."""
        cache = cache if cache is not None else kwargs.get("past_key_values")
        if not isinstance(cache, RecurrentState):  # generate() starts with a cache of its own kind: replace it
            cache = self.new_cache(input_ids.shape[0], input_ids.shape[1])
        elif cache.get_seq_length() > 0:
            input_ids = input_ids[:, cache.get_seq_length() :]
        return {
            "input_ids": input_ids,
            "cache": cache,
            "attention_mask": kwargs.get("attention_mask"),
            "use_cache": True,
        }
