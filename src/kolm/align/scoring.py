"""Reward functions: a classifier or reward model dir, or a Python callable, behind one call.

Every reward is `reward(prompts, completions) -> list[float]`, the signature
TRL's GRPO passes to reward callables, so one function serves PPO, GRPO,
DPO pair ranking and the before/after measurement:

* a classifier (`kolm finetune`'s sentiment model): the log-odds of
  `label`, log p(label) - log p(not label); > 0 exactly when the classifier
  says the label is more likely, so "share of positive rewards" is the
  positive rate;
* a one-output reward model (`align.method=reward`): its scalar score;
* `module:function`: any callable with that signature.

Models score text, not token ids: prompt + completion is re-tokenized by
the reward model's own tokenizer (EOS appended, the pooled token, as
fine-tuning trained it), so a reward model with another tokenizer than the
policy's works. A callable that raises, returns the wrong number of scores,
or returns NaN stops alignment with a message naming it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kolm.errors import KolmError

__all__ = ["Reward", "ModelReward", "CallableReward", "load_reward"]


class Reward:
    """A named reward function; subclasses implement `_score`."""

    name: str = "reward"

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
        try:
            scores = list(self._score(list(prompts), list(completions)))
        except KolmError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's reward code failing is a user error, named here
            raise KolmError(
                f"the reward {self.name} raised {type(exc).__name__}: {exc}; fix the reward function"
            ) from exc
        if len(scores) != len(completions):
            raise KolmError(
                f"the reward {self.name} returned {len(scores)} scores for {len(completions)} completions; "
                "return one float per completion"
            )
        bad = [i for i, s in enumerate(scores) if not isinstance(s, (int, float)) or not math.isfinite(float(s))]
        if bad:
            raise KolmError(
                f"the reward {self.name} returned a non-finite score (NaN/inf or not a number) for completion {bad[0]} "
                f"({completions[bad[0]]!r}); return finite floats"
            )
        return [float(s) for s in scores]

    def _score(self, prompts: list[str], completions: list[str]) -> Sequence[float]:
        raise NotImplementedError


class ModelReward(Reward):
    """A sequence classifier or one-output reward model scoring prompt + completion as text."""

    def __init__(self, path: str | Path, device: str, label: str = "긍정", max_length: int = 128, batch_size: int = 32):
        from kolm.models.loading import find_model_dir, load_model, task_info

        self.path = Path(path)
        self.name = str(path)
        self.model, self.tokenizer = load_model(path, task="classify", device=device, merge=True)
        for p in self.model.parameters():
            p.requires_grad_(False)
        n = int(self.model.config.num_labels)
        labels = [str(x) for x in task_info(find_model_dir(path)).get("labels") or []]
        if not labels:
            labels = [str(self.model.config.id2label[i]) for i in range(n)]
        self.labels = labels
        if n == 1:
            self.index = None
        elif label in labels:
            self.index = labels.index(label)
        else:
            raise KolmError(f"the reward model {path} has labels {labels}, not {label!r}; set align.reward_label")
        self.max_length, self.batch_size, self.device = max_length, batch_size, device

    def texts_scores(self, texts: Sequence[str]) -> list[float]:
        """Scores of whole texts (what `__call__` gives for prompt + completion)."""
        import torch

        from kolm.data.batching import encode_for_classifier, pad_rows, pad_token_id

        pad = pad_token_id(self.tokenizer)
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            rows = [encode_for_classifier(self.tokenizer, t, self.max_length) for t in texts[i : i + self.batch_size]]
            ids, mask = pad_rows(rows, pad, left=True)
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
            if self.index is None:
                out += logits[:, 0].tolist()
            else:
                own = logits[:, self.index]
                rest = torch.cat([logits[:, : self.index], logits[:, self.index + 1 :]], dim=1).logsumexp(-1)
                out += (own - rest).tolist()  # log-odds of the label
        return out

    def _score(self, prompts: list[str], completions: list[str]) -> list[float]:
        return self.texts_scores([p + c for p, c in zip(prompts, completions)])


class CallableReward(Reward):
    """A Python function `(prompts, completions, **kwargs) -> list[float]` named as 'module:function'."""

    def __init__(self, spec: str):
        module, _, attr = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise KolmError(
                f"align.reward={spec!r}: cannot import {attr!r} from {module!r} ({exc}); "
                "give 'package.module:function' importable from this environment"
            ) from None
        if not callable(fn):
            raise KolmError(f"align.reward={spec!r} is not callable; give a function (prompts, completions) -> scores")
        self.fn: Callable[..., Sequence[float]] = fn
        self.name = spec

    def _score(self, prompts: list[str], completions: list[str]) -> Sequence[float]:
        return self.fn(prompts=prompts, completions=completions)


def load_reward(spec: str | Path, device: str, label: str = "긍정", max_length: int = 128) -> Reward:
    """The reward named by `spec`: a model dir, or 'module:function'."""
    text = str(spec)
    if ":" in text and not Path(text).exists() and not text.startswith(("/", ".")) and "/" not in text.split(":")[0]:
        return CallableReward(text)
    if not Path(text).exists():
        raise KolmError(
            f"the reward {text} does not exist; run `kolm finetune` (sentiment classifier), "
            "`kolm align align.method=reward`, or set align.reward to a model dir or 'module:function'"
        )
    return ModelReward(text, device, label=label, max_length=max_length)
