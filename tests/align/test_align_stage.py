"""The `align` stage through the run machinery: outputs, the re-run rule, and the errors a user can cause."""

from __future__ import annotations

import json
import shutil

import pytest

from kolm.align.config import AlignConfig
from kolm.errors import ConfigError, DataError, KolmError

REWARDS = """
import math


def spaces(prompts, completions, **kwargs):
    return [float(c.count(" ")) for c in completions]


def broken(prompts, completions, **kwargs):
    raise RuntimeError("the scorer crashed")


def nan(prompts, completions, **kwargs):
    return [math.nan for _ in completions]
"""

SMALL = [
    "device=cpu",
    "align.steps=2",
    "align.batch_size=4",
    "align.eval_prompts=4",
    "align.max_new_tokens=4",
    "align.ppo_epochs=1",
    "align.max_length=64",
]


@pytest.fixture
def rewards_module(tmp_path, monkeypatch):
    (tmp_path / "kolm_test_rewards.py").write_text(REWARDS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "kolm_test_rewards"


@pytest.mark.timeout(180)
def test_stage_writes_a_loadable_model_and_reruns_only_when_inputs_change(tiny_lm, rewards_module, tmp_path):
    from kolm.config import load_config
    from kolm.models.loading import load_model
    from kolm.run import run_stage

    policy = tmp_path / "policy"
    shutil.copytree(tiny_lm, policy)
    over = SMALL + [f"align.policy={policy}", f"align.reward={rewards_module}:spaces"]
    cfg = load_config("tiny", over, run_dir=tmp_path / "run")
    first = run_stage(cfg, "align")
    assert first is not None and "ppo.positive_rate_after" in first.metrics
    out = tmp_path / "run" / "align"
    model, _ = load_model(out / "ppo" / "model")
    assert model.config.vocab_size > 0
    rows = [json.loads(line) for line in (out / "ppo" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"score", "kl", "entropy", "clipfrac", "vf_loss", "approx_kl", "response_length"} <= set(rows[0])
    assert "positive rate" in (out / "summary.md").read_text(encoding="utf-8")

    assert run_stage(cfg, "align") is None  # nothing changed: skipped
    with open(policy / "tokenizer_config.json", "a", encoding="utf-8") as fh:
        fh.write("\n")  # the input's bytes change
    assert run_stage(cfg, "align") is not None


def test_callable_rewards_that_raise_or_return_nan_stop_with_a_message(rewards_module):
    from kolm.align.scoring import load_reward

    with pytest.raises(KolmError, match="raised RuntimeError: the scorer crashed"):
        load_reward(f"{rewards_module}:broken", "cpu")(["a"], ["b"])
    with pytest.raises(KolmError, match="non-finite"):
        load_reward(f"{rewards_module}:nan", "cpu")(["a"], ["b"])
    with pytest.raises(KolmError, match="cannot import"):
        load_reward(f"{rewards_module}:missing", "cpu")
    with pytest.raises(KolmError, match="does not exist"):
        load_reward("runs/nowhere/finetune/classify", "cpu")


def test_bad_preference_rows_are_named(tiny_lm, tmp_path, rewards_module):
    from kolm.align.stage import align

    same = tmp_path / "same.jsonl"
    same.write_text(
        json.dumps({"prompt": "질문", "chosen": "답", "rejected": "답"}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"prompt": "질문", "chosen": "답"}, ensure_ascii=False) + "\n", encoding="utf-8")
    for path, message in ((same, "identical"), (missing, "missing or empty 'rejected'")):
        cfg = AlignConfig(method="dpo", preferences=str(path), steps=1, eval_prompts=2, max_new_tokens=2, max_length=32)
        with pytest.raises(DataError, match=message):
            align(cfg, policy=tiny_lm, reward=f"{rewards_module}:spaces", out=tmp_path / "out")


def test_a_max_length_beyond_the_context_and_a_missing_policy_are_errors(tiny_lm, tmp_path, rewards_module):
    from kolm.align.stage import align

    cfg = AlignConfig(method="ppo", max_length=4096)
    with pytest.raises(KolmError, match="exceeds the model's context"):
        align(cfg, policy=tiny_lm, reward=f"{rewards_module}:spaces", out=tmp_path)
    with pytest.raises(KolmError, match="not found"):
        align(cfg, policy=tmp_path / "nothing", reward=f"{rewards_module}:spaces", out=tmp_path)
    with pytest.raises(ConfigError, match="num_generations"):
        AlignConfig(method="grpo", batch_size=6, num_generations=4)


def test_a_reward_model_with_another_tokenizer_reads_text(tiny_lm, tiny_classifier, tmp_path):
    """Scores go through text, so another vocabulary works; the value model then starts from the policy."""
    import torch
    from alignkit import _model_config, build_tokenizer

    from kolm.align.ppo import value_model_for
    from kolm.align.scoring import ModelReward
    from kolm.models.loading import load_model, write_task_info
    from kolm.models.registry import build_causal_lm

    other_tok = build_tokenizer(["완전히 다른 어휘로 만든 토크나이저입니다."] * 20, vocab_size=300)
    torch.manual_seed(3)
    lm = build_causal_lm(_model_config(other_tok), vocab_size=len(other_tok), bos_id=other_tok.bos_token_id,
                         eos_id=other_tok.eos_token_id, pad_id=other_tok.pad_token_id)  # fmt: skip
    lm.save_pretrained(tmp_path / "lm")
    other_tok.save_pretrained(tmp_path / "lm")
    clf, _ = load_model(tmp_path / "lm", task="classify", labels=["부정", "긍정"])
    clf.save_pretrained(tmp_path / "clf")
    other_tok.save_pretrained(tmp_path / "clf")
    write_task_info(tmp_path / "clf", "classify", "full", ["부정", "긍정"], None)

    reward = ModelReward(tmp_path / "clf", "cpu")
    scores = reward(["이 영화는 ", "배우가 "], ["정말 좋았다", "별로였다"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    _, policy_tok = load_model(tiny_lm)
    _, source = value_model_for(reward, tiny_lm, policy_tok, "cpu")
    assert source == "policy (zero head)"
    same = ModelReward(tiny_classifier, "cpu")
    value, source = value_model_for(same, tiny_lm, policy_tok, "cpu")
    assert source == "reward model"
    with pytest.raises(KolmError, match="set align.reward_label"):
        ModelReward(tiny_classifier, "cpu", label="중립")
