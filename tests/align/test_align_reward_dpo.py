"""The reward model's loss and accuracy on a constructed case; DPO's loss through TRL against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kolm.align.config import AlignConfig
from kolm.data.tasks import Preference


def test_bradley_terry_loss_is_the_hand_computed_value():
    from kolm.align.reward import bradley_terry_loss

    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(1.0)))) / 2
    assert math.isclose(float(bradley_terry_loss(chosen, rejected)), expected, rel_tol=1e-6)
    with_margin = float(bradley_terry_loss(chosen, rejected, torch.tensor([0.5, 0.0])))
    assert with_margin > float(bradley_terry_loss(chosen, rejected))  # a margin asks for a larger gap


@pytest.mark.timeout(120)
def test_reward_model_learns_a_constructed_preference(tiny_lm, tmp_path):
    from kolm.align.reward import train_reward_model
    from kolm.models.loading import load_model

    good, bad = "정말 좋았어요 최고예요", "별로였어요 최악이에요"
    topics = ["이 영화", "배우 연기", "음악", "줄거리", "결말", "연출", "화면", "대사", "분위기", "캐릭터"]
    pairs = [
        Preference(prompt=f"{t}는 어땠나요?", chosen=good, rejected=bad, id=str(i)) for i, t in enumerate(topics * 2)
    ]
    cfg = AlignConfig(method="reward", steps=25, batch_size=8, val_fraction=0.25)
    result = train_reward_model(cfg, pairs, base_model=tiny_lm, out=tmp_path, seed=0, lr=3e-3)
    assert result.accuracy == 1.0 and result.mean_margin > 0
    assert (tmp_path / "margins.png").is_file() and (tmp_path / "metrics.jsonl").is_file()
    model, _ = load_model(result.output_dir, task="classify")
    assert model.config.num_labels == 1

    from kolm.align.scoring import load_reward

    reward = load_reward(result.output_dir, "cpu")
    s_good, s_bad = reward(["영화는 어땠나요?"] * 2, [good, bad])
    assert s_good > s_bad


def _completion_logp(model, ids, mask, completion):
    """Summed log-probability of the completion tokens of each row (by hand: forward, shift, gather)."""
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    per_token = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (per_token * completion[:, 1:]).sum(-1).tolist()


@pytest.mark.timeout(120)
def test_dpo_loss_through_trl_matches_a_hand_computation(tiny_lm, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from kolm.align.dpo import dpo_rows, trl_cpu_args
    from kolm.align.policy import frozen_copy, load_policy

    policy, tok = load_policy(tiny_lm, "cpu")
    reference = frozen_copy(policy)
    torch.manual_seed(1)
    with torch.no_grad():  # the policy differs from the reference, so the loss is not log 2
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pair = Preference(prompt="이 영화는 ", chosen="정말 좋았다", rejected="너무 지루했다")
    row = dpo_rows(tok, [pair])[0]
    beta = 0.3
    args = DPOConfig(
        **trl_cpu_args("cpu", 0, tmp_path), max_steps=1, per_device_train_batch_size=1, beta=beta, max_length=64
    )
    trainer = DPOTrainer(
        model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list([row]), processing_class=tok
    )
    batch = next(iter(trainer.get_train_dataloader()))
    loss = float(trainer.compute_loss(trainer.model, batch))

    ids, mask, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    assert ids.shape[0] == 2 and int(ids[0, 0]) == tok.bos_token_id  # [chosen, rejected], BOS first
    pc, pr = _completion_logp(policy, ids, mask, completion)
    rc, rr = _completion_logp(reference, ids, mask, completion)
    by_hand = -math.log(1 / (1 + math.exp(-beta * ((pc - rc) - (pr - rr)))))
    assert abs(by_hand - math.log(2)) > 1e-3
    assert math.isclose(loss, by_hand, rel_tol=1e-4, abs_tol=1e-5)
