"""PPO for language models, written for kolm (`align.method=ppo`).

It follows the published implementation details of RLHF with PPO (Huang et
al. 2024, "The N+ Implementation Details of RLHF with PPO"; Ziegler et al.
2019), one rollout batch at a time:

1. rollout: sample one response per prompt through `kolm.infer.generate`;
   the response ends at its first EOS (kept as a token); a response without
   EOS may be penalised (`missing_eos_penalty`);
2. score: the reward of prompt + response as text, placed on the last real
   token of the response;
3. per-token KL penalty: reward_t = -kl_coef * (log pi(y_t) - log pi_ref(y_t)),
   the coefficient fixed or adapted towards a target KL;
4. values from a separate value model, initialised from the reward model
   (same backbone, a one-output head equal to the reward's log-odds head);
5. GAE with gamma 1, lambda 0.95, then advantages whitened over real tokens;
6. `ppo_epochs` passes over shuffled minibatches: clipped policy loss,
   clipped value loss (weight `vf_coef`), gradient norm clipped at 1;
7. log-probabilities always at the rollout temperature, dropout off (eval
   mode), padding masked out of every mean.

Every step appends to `metrics.jsonl`: mean score, positive rate, KL,
the KL coefficient, entropy, clip fraction, policy and value loss, value
clip fraction, approximate KL (0.5 E[(log ratio)^2]) and response length.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from kolm.align.config import AlignConfig
from kolm.align.policy import Rollout, pack, response_logprobs, sample
from kolm.align.scoring import ModelReward, Reward
from kolm.files import append_jsonl
from kolm.progress import Progress

__all__ = [
    "masked_mean",
    "masked_whiten",
    "gae",
    "token_rewards",
    "policy_loss",
    "value_loss",
    "FixedKL",
    "AdaptiveKL",
    "ValueModel",
    "value_model_for",
    "train_ppo",
]


# ----------------------------------------------------------------------------
# The pieces, each a function of tensors (unit-tested one by one)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` over positions where `mask` is 1."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over real positions (unbiased variance); padding stays 0. `shift_mean=False` keeps the mean."""
    mean = masked_mean(x, mask)
    centred = x - mean
    n = mask.sum().clamp(min=2)
    var = (centred.pow(2) * mask).sum() / (n - 1)
    out = centred * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns, (B, R) each, over right-padded responses.

    delta_t = r_t + gamma * V_{t+1} - V_t with V = 0 after the last real token;
    A_t = delta_t + gamma * lam * A_{t+1}; returns = A + V. Padding gives 0.
    """
    B, R = rewards.shape
    mask = mask.to(rewards.dtype)
    values = values * mask
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(R)):
        next_v = values[:, t + 1] if t + 1 < R else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def token_rewards(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards, per-token KL) (B, R): -kl_coef * KL on every real token, plus the score on the last one."""
    mask = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)  # index of the last real token (EOS, or the cut)
    has = mask.sum(1) > 0
    rewards[has, last[has]] += scores[has].to(rewards.dtype)
    return rewards, kl


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss, with the clip fraction and the approximate KL of the step."""
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = log_ratio.exp()
    loss1 = -advantages * ratio
    loss2 = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.max(loss1, loss2), mask)
    stats = {
        "clipfrac": float(masked_mean((loss2 > loss1).float(), mask).detach()),
        "approx_kl": float(0.5 * masked_mean(log_ratio.detach().pow(2), mask)),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss 0.5 * max((V - G)^2, (V_clipped - G)^2), with its clip fraction."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    l1 = (values - returns).pow(2)
    l2 = (clipped - returns).pow(2)
    loss = 0.5 * masked_mean(torch.max(l1, l2), mask)
    return loss, {"vf_clipfrac": float(masked_mean((l2 > l1).float(), mask))}


class FixedKL:
    """A constant KL coefficient."""

    def __init__(self, value: float):
        self.value = value

    def update(self, current_kl: float, n: int) -> None:
        pass


class AdaptiveKL:
    """Ziegler et al. (2019): move the coefficient so the KL per response tracks `target`, at most 20% per horizon."""

    def __init__(self, value: float, target: float, horizon: int):
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, current_kl: float, n: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1.0))
        self.value *= 1.0 + error * n / self.horizon


# ----------------------------------------------------------------------------
# The value model


class ValueModel(nn.Module):
    """A transformer backbone and a one-output head: a value for every position."""

    def __init__(self, backbone: nn.Module, head: nn.Linear):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, batch: Rollout) -> torch.Tensor:
        """Value of the state before each response token, (B, R); 0 at padding."""
        P, R = batch.prompt_width, batch.response_mask.shape[1]
        h = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        v = self.head(h[:, P - 1 : P - 1 + R]).squeeze(-1).float()  # (B, R)
        return v * batch.response_mask


def _head_of(classifier: Any) -> nn.Linear | None:
    for name in ("score", "classifier"):
        head = getattr(classifier, name, None)
        if isinstance(head, nn.Linear):
            return head
    return None


def value_model_for(
    reward: Reward, policy_path: str | Path, policy_tokenizer: Any, device: str
) -> tuple[ValueModel, str]:
    """The value model and where it came from.

    From the reward model when it reads the policy's tokens (same vocabulary):
    its backbone and a head that outputs the reward's own score (the label's
    log-odds row difference of a two-label classifier). Otherwise (a Python
    reward, another tokenizer) from the policy's backbone with a zero head.
    """
    if isinstance(reward, ModelReward) and reward.tokenizer.get_vocab() == policy_tokenizer.get_vocab():
        clf = copy.deepcopy(reward.model)
        head = _head_of(clf)
        if head is not None:
            w = head.weight.detach()  # (num_labels, C)
            new = nn.Linear(w.shape[1], 1, bias=head.bias is not None).to(w.device)
            with torch.no_grad():
                if reward.index is None:
                    new.weight.copy_(w[:1])
                elif w.shape[0] == 2:
                    new.weight.copy_(w[reward.index] - w[1 - reward.index])
                else:
                    new.weight.copy_(w[reward.index : reward.index + 1])
                if head.bias is not None:
                    b = head.bias.detach()
                    new.bias.copy_(b[:1] if reward.index is None else (b[reward.index] - b[1 - reward.index]).view(1))
            model = ValueModel(clf.base_model, new).to(device)
            for p in model.parameters():
                p.requires_grad_(True)
            return model.train(), "reward model"
    from kolm.models.loading import load_model

    clf, _ = load_model(policy_path, task="classify", device=device, labels=["value"], merge=True)
    head = nn.Linear(clf.base_model.get_input_embeddings().embedding_dim, 1, bias=False).to(device)
    nn.init.zeros_(head.weight)
    model = ValueModel(clf.base_model, head).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train(), "policy (zero head)"


# ----------------------------------------------------------------------------
# The loop


@dataclass
class PPOState:
    """What the loop leaves behind."""

    steps: int
    kl_coef: float
    value_init: str
    wall_time_s: float


def _take(batch: Rollout, idx: torch.Tensor) -> Rollout:
    return Rollout(batch.input_ids[idx], batch.attention_mask[idx], batch.response_mask[idx], batch.prompt_width)


def train_ppo(
    cfg: AlignConfig,
    policy: Any,
    tokenizer: Any,
    reference: Any,
    reward: Reward,
    prompts: Sequence[str],
    *,
    policy_path: str | Path,
    metrics_path: Path,
    seed: int = 0,
    device: str = "cpu",
    lr: float = 1e-5,
    progress: Progress | None = None,
) -> PPOState:
    """Run `cfg.steps` PPO updates of `policy` (in place) on rollouts from `prompts`; log to `metrics_path`."""
    from kolm.data.batching import pad_token_id

    progress = progress or Progress(enabled=False)
    pad = pad_token_id(tokenizer)
    value, value_init = value_model_for(reward, policy_path, tokenizer, device)
    params = [p for p in policy.parameters() if p.requires_grad] + list(value.parameters())
    opt = torch.optim.AdamW(params, lr=lr, eps=1e-5, weight_decay=0.0)  # eps 1e-5: N+ details
    kl_ctl = AdaptiveKL(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl else FixedKL(cfg.kl_coef)
    gen = torch.Generator().manual_seed(seed)
    T = cfg.temperature
    policy.eval()  # dropout off: the log-probs of the update match those of the rollout
    value.eval()
    t0 = time.perf_counter()
    cursor = 0
    with progress.task("align: ppo", total=cfg.steps) as bar:
        for step in range(1, cfg.steps + 1):
            batch_prompts = [prompts[(cursor + i) % len(prompts)] for i in range(cfg.batch_size)]
            cursor += cfg.batch_size
            s = sample(
                policy,
                tokenizer,
                batch_prompts,
                cfg.max_new_tokens,
                T,
                seed=seed * 100003 + step,
                max_length=cfg.max_length,
            )
            scores = torch.tensor(reward(s.prompts, s.texts), dtype=torch.float32, device=device)
            raw_scores = scores.clone()
            if cfg.missing_eos_penalty is not None:
                scores = scores + cfg.missing_eos_penalty * (~torch.tensor(s.ended, device=device)).float()
            batch = pack(s.prompt_ids, s.response_ids, pad, device)
            mask = batch.response_mask.float()
            with torch.no_grad():
                old_logp, _ = response_logprobs(policy, batch, T)
                ref_logp, _ = response_logprobs(reference, batch, T)
                old_values = value(batch)
            rewards, kl = token_rewards(old_logp, ref_logp, scores, mask, kl_ctl.value)
            if cfg.whiten_rewards:
                rewards = masked_whiten(rewards, mask, shift_mean=False)
            adv, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            adv = masked_whiten(adv, mask)
            stats: dict[str, list[float]] = {}
            B = len(batch_prompts)
            mb = max(1, B // cfg.minibatches)
            for _ in range(cfg.ppo_epochs):
                order = torch.randperm(B, generator=gen).to(device)
                for i in range(0, B, mb):
                    idx = order[i : i + mb]
                    sub = _take(batch, idx)
                    logp, ent = response_logprobs(policy, sub, T, with_entropy=True)
                    pg, pg_stats = policy_loss(logp, old_logp[idx], adv[idx], mask[idx], cfg.cliprange)
                    vf, vf_stats = value_loss(value(sub), old_values[idx], returns[idx], mask[idx], cfg.cliprange_value)
                    loss = pg + cfg.vf_coef * vf
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    for k, v in {
                        **pg_stats,
                        **vf_stats,
                        "pg_loss": float(pg.detach()),
                        "vf_loss": float(vf.detach()),
                        "entropy": float(masked_mean(ent, mask[idx])),
                    }.items():
                        stats.setdefault(k, []).append(v)
            seq_kl = float(kl.sum(1).mean())
            row = {
                "step": step,
                "score": round(float(raw_scores.mean()), 4),
                "positive_rate": round(float((raw_scores > 0).float().mean()), 4),
                "kl": round(seq_kl, 5),
                "kl_coef": round(kl_ctl.value, 5),
                "response_length": round(float(mask.sum(1).mean()), 2),
                "eos_rate": round(sum(s.ended) / B, 3),
                "value_mean": round(float(masked_mean(old_values, mask)), 4),
                **{k: round(sum(v) / len(v), 5) for k, v in stats.items()},
            }
            append_jsonl(metrics_path, row)
            kl_ctl.update(seq_kl, B)
            bar.advance(1)
    return PPOState(steps=cfg.steps, kl_coef=kl_ctl.value, value_init=value_init, wall_time_s=time.perf_counter() - t0)
