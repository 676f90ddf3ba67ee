"""PPO's pieces against hand computations: GAE, KL rewards, whitening, losses, the KL controller, EOS and padding."""

from __future__ import annotations

import math

import pytest
import torch

from kolm.align.policy import pack, response_logprobs, sample
from kolm.align.ppo import AdaptiveKL, gae, masked_mean, masked_whiten, policy_loss, token_rewards, value_loss


def test_gae_matches_a_hand_computed_case():
    # one row of 3 real tokens and one padded position; gamma 1, lambda 0.5
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0]])  # the 9 sits on padding and must be ignored
    mask = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # deltas: t2 = 1 + 0 - 0.4 = 0.6; t1 = 0 + 0.4 - 0.2 = 0.2; t0 = 0 + 0.2 - 0.5 = -0.3
    # advantages: A2 = 0.6; A1 = 0.2 + 0.5 * 0.6 = 0.5; A0 = -0.3 + 0.5 * 0.5 = -0.05
    torch.testing.assert_close(adv, torch.tensor([[-0.05, 0.5, 0.6, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.45, 0.7, 1.0, 0.0]]))


def test_gae_with_gamma_and_rows_of_different_length():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    values = torch.zeros(2, 2)
    mask = torch.tensor([[1, 1], [1, 0]])
    adv, _ = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[1.0 + 0.5 * 2.0, 2.0], [3.0, 0.0]]))


def test_token_rewards_put_the_score_on_the_last_real_token_and_the_kl_everywhere():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = token_rewards(logp, ref, torch.tensor([10.0, 20.0]), mask, kl_coef=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.0, -1.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.0, 10.1], [-0.1, 20.0, 0.0]]))


def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    w = masked_whiten(x, mask)
    real = w[mask.bool()]
    assert abs(float(real.mean())) < 1e-6
    assert math.isclose(float(real.std()), 1.0, rel_tol=1e-4)  # unbiased, as computed
    assert torch.all(w[~mask.bool()] == 0)
    kept = masked_whiten(x, mask, shift_mean=False)[mask.bool()]
    assert math.isclose(float(kept.mean()), 2.5, rel_tol=1e-5)
    assert float(masked_mean(x, mask)) == 2.5


def test_policy_loss_clips_and_reports_its_statistics():
    old = torch.zeros(1, 2)
    new = torch.tensor([[math.log(1.5), math.log(0.9)]])  # ratios 1.5 (clipped at 1.2) and 0.9
    adv = torch.tensor([[1.0, 1.0]])
    loss, stats = policy_loss(new, old, adv, torch.ones(1, 2), clip=0.2)
    assert math.isclose(float(loss), -(1.2 + 0.9) / 2, rel_tol=1e-5)
    assert stats["clipfrac"] == 0.5
    assert math.isclose(stats["approx_kl"], 0.5 * (math.log(1.5) ** 2 + math.log(0.9) ** 2) / 2, rel_tol=1e-5)


def test_value_loss_takes_the_worse_of_clipped_and_unclipped():
    old = torch.tensor([[0.0]])
    new = torch.tensor([[1.0]])  # clipped to 0.2
    ret = torch.tensor([[1.0]])
    loss, stats = value_loss(new, old, ret, torch.ones(1, 1), clip=0.2)
    assert math.isclose(float(loss), 0.5 * 0.8**2, rel_tol=1e-5) and stats["vf_clipfrac"] == 1.0


def test_adaptive_kl_moves_towards_the_target_at_most_twenty_percent_per_horizon():
    ctl = AdaptiveKL(0.1, target=6.0, horizon=100)
    ctl.update(current_kl=60.0, n=100)
    assert math.isclose(ctl.value, 0.12)
    ctl.update(current_kl=3.0, n=50)
    assert math.isclose(ctl.value, 0.12 * (1 - 0.2 * 0.5))  # error -0.5 clipped to -0.2, half a horizon


def test_padded_batch_scores_each_row_as_it_would_alone(tiny_lm):
    from kolm.models.loading import load_model

    model, tok = load_model(tiny_lm)
    rows = [([1, 40, 41, 42, 43], [50, 51]), ([1, 60], [70, 71, 72, 2])]
    together = pack([p for p, _ in rows], [r for _, r in rows], tok.pad_token_id, "cpu")
    assert together.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    with torch.no_grad():
        both, ent = response_logprobs(model, together, temperature=0.7, with_entropy=True)
        for i, (p, r) in enumerate(rows):
            alone, _ = response_logprobs(model, pack([p], [r], tok.pad_token_id, "cpu"), temperature=0.7)
            torch.testing.assert_close(both[i, : len(r)], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.all(both[0, 2:] == 0) and torch.all(ent[0, 2:] == 0)


def test_responses_keep_their_eos_and_prompts_too_long_are_an_error(tiny_lm):
    from kolm.errors import KolmError
    from kolm.models.loading import load_model

    model, tok = load_model(tiny_lm)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] += 50.0  # make EOS the only likely token
    s = sample(model, tok, ["이 영화는 ", "배우가 "], max_new_tokens=5, temperature=1.0, seed=0)
    assert s.ended == [True, True]
    assert all(r[-1] == tok.eos_token_id for r in s.response_ids)
    with pytest.raises(KolmError, match="max_length"):
        sample(model, tok, ["아주 긴 프롬프트 " * 20], max_new_tokens=8, temperature=1.0, max_length=32)
