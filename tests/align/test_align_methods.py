"""One short run of each method on a tiny model: only trainable parameters change, and an easy reward goes up.

The easy reward counts spaces in the response (words, in effect); a random
tiny model learns to emit more of them within a few dozen steps.
"""

from __future__ import annotations

import pytest
import torch

from kolm.align.config import AlignConfig
from kolm.align.measure import measure
from kolm.align.policy import load_policy, reference_of

PROMPTS = ["이 영화는 ", "배우들의 ", "정말 ", "기대했는데 ", "스토리가 ", "음악이 ", "처음에는 ", "솔직히 "]


def _train(method, cfg, policy, tok, reference, reward, tmp_path):
    if method == "ppo":
        from kolm.align.ppo import train_ppo

        train_ppo(cfg, policy, tok, reference, reward, PROMPTS * 4, policy_path=cfg.policy,
                  metrics_path=tmp_path / "metrics.jsonl", seed=0, lr=cfg.lr)  # fmt: skip
    elif method == "dpo":
        from kolm.align.dpo import sampled_pairs, train_dpo

        pairs = sampled_pairs(policy, tok, reward, PROMPTS * 4, n_samples=4, max_new_tokens=cfg.max_new_tokens,
                              temperature=1.0, seed=0)  # fmt: skip
        held = train_dpo(cfg, policy, tok, pairs[2:], pairs[:2], out=tmp_path, seed=0, lr=cfg.lr)
        assert 0.0 <= held["rewards_accuracies"] <= 1.0
    else:
        from kolm.align.grpo import train_grpo

        train_grpo(cfg, policy, tok, reward, PROMPTS * 4, out=tmp_path, seed=0, lr=cfg.lr)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "method,peft,lr,steps",
    [("ppo", "full", 1e-2, 30), ("ppo", "lora", 5e-2, 3), ("dpo", "full", 1e-2, 12), ("grpo", "full", 3e-2, 20)],
)
def test_short_run_changes_only_trainable_weights_and_raises_the_reward(
    method, peft, lr, steps, tiny_lm, easy_reward, tmp_path
):
    cfg = AlignConfig(method=method, policy=str(tiny_lm), peft=peft, lr=lr, steps=steps, batch_size=8,
                      max_new_tokens=8, max_length=64, num_generations=4, minibatches=2, ppo_epochs=2)  # fmt: skip
    torch.manual_seed(0)
    policy, tok = load_policy(tiny_lm, "cpu", peft, lora_r=4, lora_alpha=8)
    reference = reference_of(policy)
    frozen = {n: p.detach().clone() for n, p in reference.named_parameters()} if peft == "full" else {}
    eval_prompts = PROMPTS * 6
    kw = dict(max_new_tokens=8, temperature=1.0, seed=7, device="cpu")
    before = measure(policy, tok, easy_reward, eval_prompts, **kw)
    snapshot = {n: p.detach().clone() for n, p in policy.named_parameters()}
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    _train(method, cfg, policy, tok, reference, easy_reward, tmp_path)
    changed = {n for n, p in policy.named_parameters() if not torch.equal(snapshot[n], p.detach())}
    assert changed, "no weight moved"
    assert changed <= trainable, f"frozen weights changed: {sorted(changed - trainable)[:3]}"
    if peft == "lora":
        assert all("lora_" in n for n in changed)
    for n, p in reference.named_parameters() if peft == "full" else ():
        assert torch.equal(frozen[n], p), f"the reference's {n} changed"
    after = measure(policy, tok, easy_reward, eval_prompts, reference=reference, **kw)
    assert after.kl > 0
    if peft == "full":  # LoRA on a random model leaves the near-uniform output head as it is: no reward claim
        assert after.mean_reward > before.mean_reward + 0.1, (before.summary(), after.summary())
    assert (tmp_path / "metrics.jsonl").is_file()
