"""Settings of the alignment stage (`kolm align`, `kolm align compare`).

Defaults follow the papers, scaled to the workshop's small models: DPO's
beta 0.1 (Rafailov et al. 2023); PPO's gamma 1, lambda 0.95, clip 0.2, four
epochs over minibatches per rollout batch, value loss weight 0.1 and a KL
penalty of 0.05 (Huang et al. 2024, "The N+ Implementation Details of RLHF
with PPO"; Ziegler et al. 2019 for the adaptive controller); GRPO's group of
samples per prompt and KL weight 0.04 (Shao et al. 2024, DeepSeekMath).
"""

from __future__ import annotations

from dataclasses import dataclass

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["AlignConfig", "METHODS", "PEFT_METHODS", "DPO_LOSSES"]

METHODS = ["reward", "dpo", "ppo", "grpo"]
PEFT_METHODS = ["full", "lora"]
DPO_LOSSES = ["sigmoid", "hinge", "ipo", "robust", "exo_pair", "bco_pair", "sppo_hard", "apo_zero", "apo_down"]


@dataclass
class AlignConfig(Section):
    """Which alignment method runs, on which model, data, reward and budget."""

    method: str = option(
        "ppo", help="reward (train a reward model), dpo, ppo (written in kolm) or grpo (방법)", choices=METHODS
    )
    policy: str | None = option(
        None, help="model dir to align (any HF causal LM, or an adapter); default: this run's pretrain/final"
    )
    reward: str | None = option(
        None,
        help="the reward: a model dir (a classifier or a one-output reward model) or 'module:function' "
        "(a Python callable (prompts, completions) -> scores); default: this run's finetune/classify",
    )
    reward_label: str = option(
        "긍정", help="classifier label whose log-odds is the reward (a one-output reward model ignores it)"
    )
    prompts: str | None = option(
        None,
        help="prompts for rollouts and the before/after measurement: a jsonl/tsv/parquet file with a text column "
        "(cut to its first words) or with 'prompt'; default: the embedded reviews",
    )
    prompt_field: str = option("text", help="text column of align.prompts (NSMC tsv: document)")
    prompt_min_words: int = option(1, help="a review prompt keeps at least this many words (어절)", ge=1)
    prompt_max_words: int = option(3, help="a review prompt keeps at most this many words (어절)", ge=1)
    preferences: str | None = option(
        None,
        help="prompt/chosen/rejected jsonl or parquet for dpo and reward; default: dpo samples pairs from the policy "
        "ranked by the reward, reward trains on the embedded preferences.jsonl.bz2",
    )
    val_fraction: float = option(0.1, help="share of preference pairs held out for accuracy and margins", gt=0, lt=1)
    # training budget and optimizer
    steps: int = option(30, help="optimizer steps (dpo, reward) or rollout batches (ppo, grpo)", ge=1)
    batch_size: int = option(
        16, help="responses per rollout batch (ppo, grpo: batch_size / num_generations prompts) or pairs per step", ge=1
    )
    lr: float | None = option(None, help="learning rate; default 1e-5 full, 1e-4 LoRA (x10 for the reward model)", gt=0)
    peft: str = option("full", help="train every weight (full) or a LoRA adapter (lora)", choices=PEFT_METHODS)
    lora_r: int = option(8, help="LoRA rank", ge=1)
    lora_alpha: int = option(16, help="LoRA scaling alpha", ge=1)
    max_length: int = option(128, help="maximum tokens of prompt + response", ge=8)
    # sampling (rollouts and the before/after measurement)
    max_new_tokens: int = option(24, help="tokens sampled per response", ge=1)
    temperature: float = option(1.0, help="sampling temperature of rollouts, also used when scoring them", gt=0)
    missing_eos_penalty: float | None = option(
        None, help="added to the score of a response without EOS (N+ details use -1.0 for summaries); None = off"
    )
    # DPO
    beta: float = option(0.1, help="DPO: strength of the pull towards the reference (IPO: its tau)", gt=0)
    dpo_loss: str = option("sigmoid", help="DPO loss variant offered by TRL", choices=DPO_LOSSES)
    dpo_samples: int = option(4, help="DPO on sampled pairs: responses per prompt; best and worst form the pair", ge=2)
    # PPO
    ppo_epochs: int = option(4, help="PPO: passes over each rollout batch", ge=1)
    minibatches: int = option(2, help="PPO: minibatches per pass", ge=1)
    kl_coef: float = option(0.05, help="PPO: per-token KL penalty coefficient (initial value when adaptive)", ge=0)
    adaptive_kl: bool = option(False, help="PPO: adapt kl_coef towards kl_target (Ziegler et al. 2019)")
    kl_target: float = option(6.0, help="PPO: target KL per response of the adaptive controller", gt=0)
    kl_horizon: int = option(10000, help="PPO: horizon of the adaptive controller, in responses", ge=1)
    gamma: float = option(1.0, help="PPO: discount", ge=0, le=1)
    lam: float = option(0.95, help="PPO: GAE lambda", ge=0, le=1)
    cliprange: float = option(0.2, help="PPO: policy ratio clip", gt=0)
    cliprange_value: float = option(0.2, help="PPO: value clip", gt=0)
    vf_coef: float = option(0.1, help="PPO: value loss weight", ge=0)
    whiten_rewards: bool = option(False, help="PPO: whiten the per-token rewards before GAE")
    # GRPO
    num_generations: int = option(4, help="GRPO: responses per prompt (the group)", ge=2)
    grpo_beta: float = option(0.04, help="GRPO: KL weight against the reference (0 = no reference model)", ge=0)
    # measurement and comparison
    eval_prompts: int = option(64, help="held-out prompts sampled before and after alignment", ge=1)
    samples_shown: int = option(6, help="before/after samples shown side by side in summary.md", ge=0)
    compare_methods: list[str] = option(
        ["dpo", "ppo", "grpo"], help="methods run by `kolm align compare` on the same prompts and budget"
    )
    device: str | None = option(None, help="device override (default: the run's device)")

    def validate(self) -> None:
        if self.prompt_min_words > self.prompt_max_words:
            raise ConfigError("align.prompt_min_words: must not exceed align.prompt_max_words")
        bad = [m for m in self.compare_methods if m not in ("dpo", "ppo", "grpo")]
        if bad:
            raise ConfigError(f"align.compare_methods: {bad} cannot be compared; choose among dpo, ppo, grpo")
        if ("grpo" in (self.method, *self.compare_methods)) and self.batch_size % self.num_generations:
            raise ConfigError(
                f"align.batch_size: GRPO needs a multiple of align.num_generations ({self.num_generations})"
            )
        if self.max_new_tokens >= self.max_length:
            raise ConfigError("align.max_new_tokens: must be smaller than align.max_length")
