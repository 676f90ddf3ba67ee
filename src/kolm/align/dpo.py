"""DPO through TRL's `DPOTrainer` (`align.method=dpo`), on preference files or on pairs sampled from the policy.

Rafailov et al. (2023): loss = -log sigmoid(beta * ((log pi(y_c) - log pi_ref(y_c))
- (log pi(y_r) - log pi_ref(y_r)))), log-probabilities summed over the answer's
tokens. TRL's other loss variants (ipo, hinge, robust, ...) are `align.dpo_loss`.

What kolm settles around TRL (checked on TRL 1.16 with kolm's models):
- the reference is explicit: a frozen copy of the policy for full training,
  the base (adapter switched off) for LoRA; otherwise TRL would reload it from
  `config._name_or_path`, which for a merged adapter is the wrong model;
- CPU runs need `bf16=False` and no gradient checkpointing (TRL turns both on);
- plain-text prompts start with the tokenizer's BOS, as rollouts and
  pretraining documents do;
- with no preference file, pairs are sampled: `dpo_samples` responses per
  prompt, ranked by the reward, best as chosen and worst as rejected (ties
  and identical texts left out).

Every logged step goes to `metrics.jsonl` (loss, implicit reward accuracy and
margins, chosen/rejected log-probabilities); held-out pairs are scored at
the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kolm.align.config import AlignConfig
from kolm.align.policy import frozen_copy, sample
from kolm.align.scoring import Reward
from kolm.data.tasks import Preference
from kolm.errors import DataError
from kolm.files import append_jsonl
from kolm.progress import Progress

__all__ = ["sampled_pairs", "dpo_rows", "train_dpo", "trl_cpu_args"]


def sampled_pairs(
    policy: Any,
    tokenizer: Any,
    reward: Reward,
    prompts: Sequence[str],
    *,
    n_samples: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    max_length: int | None = None,
) -> list[Preference]:
    """One pair per prompt: the best and the worst of `n_samples` sampled responses by `reward`."""
    repeated = [p for p in prompts for _ in range(n_samples)]
    s = sample(policy, tokenizer, repeated, max_new_tokens, temperature, seed=seed, max_length=max_length)
    # U+FFFD marks a Hangul syllable cut between byte-level tokens; TRL re-tokenizes the text, so drop it
    texts = [t.replace("\ufffd", "") for t in s.texts]
    scores = reward(s.prompts, texts)
    pairs = []
    for i, prompt in enumerate(prompts):
        group = list(range(i * n_samples, (i + 1) * n_samples))
        best = max(group, key=lambda j: scores[j])
        worst = min(group, key=lambda j: scores[j])
        if (
            scores[best] > scores[worst]
            and texts[best].strip()
            and texts[worst].strip()
            and texts[best] != texts[worst]
        ):
            pairs.append(Preference(prompt=prompt, chosen=texts[best], rejected=texts[worst], id=f"sampled-{i}"))
    return pairs


def dpo_rows(tokenizer: Any, pairs: Sequence[Preference]) -> list[dict[str, Any]]:
    """TRL's preference rows: conversational (message lists) for chat pairs, else text with BOS before the prompt."""
    bos = tokenizer.bos_token or ""
    rows = []
    for p in pairs:
        if p.is_chat:
            rows.append({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})
        else:
            rows.append({"prompt": bos + str(p.prompt), "chosen": p.chosen, "rejected": p.rejected})
    return rows


def trl_cpu_args(device: str, seed: int, out: Path) -> dict[str, Any]:
    """TrainingArguments every TRL trainer here gets: kolm's device, seed, no bf16/checkpointing on CPU, no saving."""
    return dict(
        output_dir=str(out),
        use_cpu=device == "cpu",
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
    )


def metrics_callback(metrics_path: Path, bar: Any) -> Any:
    """A TrainerCallback appending every log to metrics.jsonl (with `step`) and advancing the progress bar."""
    from transformers import TrainerCallback

    class _Log(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            nums = {
                k.replace("/", "_"): round(float(v), 6) for k, v in (logs or {}).items() if isinstance(v, (int, float))
            }
            if nums and not any(k.startswith("train_") for k in nums):  # the end-of-training summary is not a step
                append_jsonl(metrics_path, {"step": state.global_step, **nums})

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            bar.advance(1)

    return _Log()


def train_dpo(
    cfg: AlignConfig,
    policy: Any,
    tokenizer: Any,
    train_pairs: Sequence[Preference],
    val_pairs: Sequence[Preference],
    *,
    out: Path,
    reference: Any | None = None,
    seed: int = 0,
    device: str = "cpu",
    lr: float = 1e-5,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Train `policy` (in place) with DPO on `train_pairs`; return the held-out implicit-reward metrics.

    `reference` is the frozen reference model of full training (default: a
    frozen copy of `policy`); a LoRA policy's reference is its base.
    """
    import shutil

    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    progress = progress or Progress(enabled=False)
    if not train_pairs:
        raise DataError("DPO has no training pairs; give align.preferences or more prompts (sampled pairs all tied)")
    lora = getattr(policy, "active_peft_config", None) is not None
    if lora:
        reference = None  # TRL switches the adapter off for the reference
    elif reference is None:
        reference = frozen_copy(policy)
    work = out / "trainer"
    args = DPOConfig(
        **trl_cpu_args(device, seed, work),
        max_steps=cfg.steps,
        per_device_train_batch_size=min(cfg.batch_size, len(train_pairs)),
        per_device_eval_batch_size=min(cfg.batch_size, max(1, len(val_pairs))),
        learning_rate=lr,
        lr_scheduler_type="constant",
        beta=cfg.beta,
        loss_type=[cfg.dpo_loss],
        max_length=cfg.max_length,
    )
    t0 = time.perf_counter()
    with progress.task("align: dpo", total=cfg.steps) as bar:
        trainer = DPOTrainer(
            model=policy,
            ref_model=reference,
            args=args,
            train_dataset=Dataset.from_list(dpo_rows(tokenizer, train_pairs)),
            processing_class=tokenizer,
            callbacks=[metrics_callback(out / "metrics.jsonl", bar)],
        )
        trainer.train()
    held_out: dict[str, float] = {"wall_time_s": round(time.perf_counter() - t0, 2)}
    if val_pairs:
        ev = trainer.evaluate(eval_dataset=Dataset.from_list(dpo_rows(tokenizer, val_pairs)))
        for key in (
            "rewards/accuracies",
            "rewards/margins",
            "rewards/chosen",
            "rewards/rejected",
            "logps/chosen",
            "logps/rejected",
            "loss",
        ):
            if f"eval_{key}" in ev:
                held_out[key.replace("/", "_")] = round(float(ev[f"eval_{key}"]), 5)
    shutil.rmtree(work, ignore_errors=True)
    return held_out
