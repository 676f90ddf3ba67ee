"""Before and after: sample the held-out prompts, score the responses, and measure the drift from the reference.

The numbers every method reports the same way, so the methods compare:
mean reward, positive rate (share of responses with reward > 0: for the
sentiment classifier's log-odds, the share it calls positive), mean response
length, and KL(policy || reference) per response, estimated on the policy's
own samples as the sum over response tokens of log pi(y_t) - log pi_ref(y_t)
(at the sampling temperature), with its per-token mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kolm.align.policy import Samples, pack, response_logprobs, sample
from kolm.align.scoring import Reward

__all__ = ["Measurement", "measure", "sequence_kl"]


@dataclass
class Measurement:
    """What sampling the held-out prompts from one model gave."""

    n: int
    mean_reward: float
    positive_rate: float
    kl: float  # mean over responses of the summed per-token log-ratio to the reference
    kl_per_token: float
    response_tokens: float
    eos_rate: float
    rewards: list[float] = field(default_factory=list, repr=False)
    texts: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, float]:
        """The headline numbers (no per-sample lists)."""
        d = asdict(self)
        d.pop("rewards"), d.pop("texts")
        return d


def sequence_kl(
    policy: Any, reference: Any, s: Samples, pad_id: int, temperature: float, device: str, batch_size: int = 32
) -> tuple[list[float], list[int]]:
    """Per response: summed log-ratio of policy to reference over its tokens, and its token count."""
    import torch

    kls: list[float] = []
    lens: list[int] = []
    with torch.no_grad():
        for i in range(0, len(s.prompt_ids), batch_size):
            batch = pack(s.prompt_ids[i : i + batch_size], s.response_ids[i : i + batch_size], pad_id, device)
            lp, _ = response_logprobs(policy, batch, temperature)
            ref, _ = response_logprobs(reference, batch, temperature)
            kls += ((lp - ref) * batch.response_mask).sum(-1).tolist()
            lens += batch.response_mask.sum(-1).tolist()
    return kls, lens


def measure(
    model: Any,
    tokenizer: Any,
    reward: Reward,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    device: str,
    reference: Any | None = None,
    max_length: int | None = None,
) -> Measurement:
    """Sample one response per prompt from `model`, score it with `reward`, and measure KL to `reference`."""
    from kolm.data.batching import pad_token_id

    was_training = getattr(model, "training", False)
    model.eval()
    s = sample(model, tokenizer, prompts, max_new_tokens, temperature, seed=seed, max_length=max_length)
    rewards = reward(s.prompts, s.texts)
    lens = [len(r) for r in s.response_ids]
    kls = [0.0] * len(lens)
    if reference is not None:
        kls, lens = sequence_kl(model, reference, s, pad_token_id(tokenizer), temperature, device)
    model.train(was_training)
    n = len(rewards)
    tokens = sum(lens)
    return Measurement(
        n=n,
        mean_reward=round(sum(rewards) / n, 4),
        positive_rate=round(sum(r > 0 for r in rewards) / n, 4),
        kl=round(sum(kls) / n, 4),
        kl_per_token=round(sum(kls) / max(1, tokens), 5),
        response_tokens=round(tokens / n, 2),
        eos_rate=round(sum(s.ended) / n, 4),
        rewards=[round(r, 4) for r in rewards],
        texts=list(s.texts),
    )
