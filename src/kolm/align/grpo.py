"""GRPO through TRL's `GRPOTrainer` (`align.method=grpo`).

Shao et al. (2024): sample a group of `num_generations` responses per prompt,
use each response's reward relative to its group (minus the group mean,
over the group's standard deviation) as the advantage of all its tokens, and
take a clipped policy-gradient step with a KL penalty (`grpo_beta`) against
the reference. No value model.

The reward is the same `kolm.align.scoring.Reward` PPO uses (a model dir or a
'module:function' callable), handed to TRL as a callable, so a reward model
with another tokenizer than the policy's works (it re-reads the text). What
kolm settles around TRL 1.16 on its models: CPU needs `bf16=False` and no
gradient checkpointing; the reference is the base with the adapter switched
off for LoRA, and for full training an explicit frozen copy handed to the
trainer (TRL would reload it from `config._name_or_path`, which fails for
kolm's config class and is the wrong model for a policy merged from an
adapter). The completion budget and
sampling temperature are those of PPO (`max_new_tokens`, `temperature`), and
`batch_size` counts responses, so `kolm align compare` gives every method
the same number of sampled responses.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kolm.align.config import AlignConfig
from kolm.align.dpo import metrics_callback, trl_cpu_args
from kolm.align.policy import frozen_copy
from kolm.align.scoring import Reward
from kolm.progress import Progress

__all__ = ["train_grpo", "as_trl_reward"]


def as_trl_reward(reward: Reward, bos: str) -> Any:
    """The reward as TRL calls it (`prompts`, `completions`, ...): prompts lose the BOS text kolm put before them."""

    def reward_fn(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        plain = [p[len(bos) :] if bos and p.startswith(bos) else p for p in prompts]
        return reward(plain, completions)

    reward_fn.__name__ = "reward"
    return reward_fn


def train_grpo(
    cfg: AlignConfig,
    policy: Any,
    tokenizer: Any,
    reward: Reward,
    prompts: Sequence[str],
    *,
    out: Path,
    reference: Any | None = None,
    seed: int = 0,
    device: str = "cpu",
    lr: float = 1e-5,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Train `policy` (in place) with GRPO for `cfg.steps` steps on `prompts`.

    `reference` is the frozen reference of full training (default: a frozen
    copy of `policy`); a LoRA policy's reference is its base.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    progress = progress or Progress(enabled=False)
    lora = getattr(policy, "active_peft_config", None) is not None
    explicit_ref = cfg.grpo_beta > 0 and not lora  # TRL would reload the reference from config._name_or_path
    bos = tokenizer.bos_token or ""
    n_prompts = max(1, cfg.batch_size // cfg.num_generations)
    needed = n_prompts * cfg.steps
    rows = [{"prompt": bos + prompts[i % len(prompts)]} for i in range(max(needed, len(prompts)))]
    work = out / "trainer"
    args = GRPOConfig(
        **trl_cpu_args(device, seed, work),
        max_steps=cfg.steps,
        per_device_train_batch_size=n_prompts * cfg.num_generations,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        beta=0.0 if explicit_ref else cfg.grpo_beta,
        learning_rate=lr,
        lr_scheduler_type="constant",
        shuffle_dataset=True,
    )
    t0 = time.perf_counter()
    with progress.task("align: grpo", total=cfg.steps) as bar:
        trainer = GRPOTrainer(
            model=policy,
            reward_funcs=[as_trl_reward(reward, bos)],
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[metrics_callback(out / "metrics.jsonl", bar)],
        )
        if explicit_ref:
            from trl.trainer.utils import add_fused_lm_head

            ref = reference if reference is not None else frozen_copy(policy)
            add_fused_lm_head(ref, temperature=trainer.temperature, cast_lm_head_to_fp32=args.cast_lm_head_to_fp32)
            trainer.ref_model = trainer.accelerator.prepare_model(ref, evaluation_mode=True)
            trainer.beta = cfg.grpo_beta
        trainer.train()
    shutil.rmtree(work, ignore_errors=True)
    return {"wall_time_s": round(time.perf_counter() - t0, 2)}
