"""The `align` stage: align the run's model with one method and measure the effect before and after.

`align.method`:
- `reward`: train a reward model on preference pairs (`align/reward/`);
- `dpo`, `ppo`, `grpo`: align the policy (default: `pretrain/final`) with a
  reward (default: the sentiment classifier `finetune/classify`, so the
  workshop demo steers review continuations towards positive sentiment).

For the three policy methods the same held-out prompts are sampled before
and after at the rollout temperature: mean reward, positive rate, KL to the
reference, response length (`kolm.align.measure`). Writes
`align/<method>/` (`model/` or `adapter/`, `metrics.jsonl`, `eval.json`,
`samples.jsonl`) and `align/summary.md` for the report.

`align(cfg, ...)` is the typed core for the Python API; `run(ctx)` feeds it
this run's folders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kolm.align.config import AlignConfig
from kolm.align.measure import Measurement, measure
from kolm.context import StageContext, StageResult
from kolm.errors import KolmError
from kolm.files import append_jsonl, write_json
from kolm.progress import Progress
from kolm.runtime import resolve_device, seed_everything

__all__ = ["AlignResult", "align", "run", "policy_dir", "reward_spec", "stage_device", "before_after_table"]


@dataclass
class AlignResult:
    """What one alignment run measured and wrote."""

    method: str
    output_dir: str
    wall_time_s: float
    before: Measurement | None = None
    after: Measurement | None = None
    details: dict[str, Any] = field(default_factory=dict)  # method-specific: held-out DPO metrics, PPO state, ...
    inputs: list[Path] = field(default_factory=list)


def policy_dir(cfg: AlignConfig, pretrain_dir: Path) -> Path:
    """align.policy, else the run's pretrain/final."""
    return Path(cfg.policy) if cfg.policy else pretrain_dir / "final"


def reward_spec(cfg: AlignConfig, finetune_dir: Path) -> str:
    """align.reward, else the run's sentiment classifier finetune/classify."""
    return cfg.reward or str(finetune_dir / "classify")


def stage_device(cfg: AlignConfig, ctx: StageContext) -> str:
    """The run's device, or the `align.device` override."""
    return resolve_device(cfg.device) if cfg.device else ctx.device


def _lr(cfg: AlignConfig, method: str) -> float:
    from kolm.align.policy import DEFAULT_LR

    base = cfg.lr or DEFAULT_LR[cfg.peft]
    return base * 10 if method == "reward" and cfg.lr is None else base


def before_after_table(results: list[AlignResult]) -> str:
    """Markdown: positive rate, mean reward, KL and length before and after each method."""
    lines = [
        "| method | positive rate before | after | mean reward before | after | KL to reference | KL per token | response tokens | wall time (s) |",
        "|" + "---|" * 9,
    ]
    for r in results:
        if r.before is None or r.after is None:
            continue
        b, a = r.before, r.after
        lines.append(
            f"| {r.method} | {b.positive_rate:.3f} | **{a.positive_rate:.3f}** | {b.mean_reward:.3f} | **{a.mean_reward:.3f}** | "
            f"{a.kl:.3f} | {a.kl_per_token:.4f} | {a.response_tokens:.1f} | {r.wall_time_s:.1f} |"
        )
    return "\n".join(lines)


def _samples_table(prompts: list[str], before: Measurement, after: Measurement, n: int) -> str:
    rows = ["| prompt | before | reward | after | reward |", "|---|---|---|---|---|"]
    for i in range(min(n, len(prompts))):

        def cell(t: str) -> str:
            return t.replace("|", "\\|").replace("\n", " ").strip() or "(empty)"

        rows.append(
            f"| {cell(prompts[i])} | {cell(before.texts[i])} | {before.rewards[i]:+.2f} | {cell(after.texts[i])} | {after.rewards[i]:+.2f} |"
        )
    return "\n".join(rows)


def _train_reward(cfg: AlignConfig, base: Path, out: Path, seed: int, device: str, progress: Progress) -> AlignResult:
    from kolm.align.reward import train_reward_model
    from kolm.data.tasks import read_preferences

    pairs = read_preferences(cfg.preferences)
    if len(pairs) < 4:
        raise KolmError(
            f"{len(pairs)} preference pairs are too few to train and hold out; give align.preferences with more"
        )
    r = train_reward_model(
        cfg, pairs, base_model=base, out=out, seed=seed, device=device, lr=_lr(cfg, "reward"), progress=progress
    )
    details = {k: v for k, v in r.__dict__.items() if k not in ("margins", "output_dir")}
    write_json(
        out / "eval.json", {"method": "reward", **details, "margins": r.margins, "output_dir": Path(r.output_dir).name}
    )
    inputs = [base] + ([Path(cfg.preferences)] if cfg.preferences else [])
    return AlignResult("reward", r.output_dir, r.wall_time_s, details=details, inputs=inputs)


def align(
    cfg: AlignConfig,
    method: str | None = None,
    *,
    policy: str | Path,
    reward: str | Path | None,
    out: str | Path,
    seed: int = 0,
    device: str = "cpu",
    progress: Progress | None = None,
) -> AlignResult:
    """Align the model at `policy` with `method` (default `cfg.method`) and `reward`; write `out/<method>/`.

    `reward` is a model dir or 'module:function' (not used by `method=reward`,
    which trains one from `policy` on `cfg.preferences`). `device` is a
    resolved device name.
    """
    from kolm.align.policy import load_policy, reference_of, save_policy
    from kolm.align.prompts import load_prompts
    from kolm.align.scoring import load_reward

    method = method or cfg.method
    progress = progress or Progress(enabled=False)
    out = Path(out) / method
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    seed_everything(seed)
    policy = Path(policy)
    if not policy.exists():
        raise KolmError(f"the model to align was not found: {policy} (run `kolm pretrain`, or set align.policy)")
    if method == "reward":
        return _train_reward(cfg, policy, out, seed, device, progress)
    if reward is None:
        raise KolmError(f"align.method={method} needs a reward: set align.reward to a model dir or 'module:function'")
    inputs: list[Path] = [policy]
    if Path(str(reward)).exists():
        inputs.append(Path(str(reward)))
    rew = load_reward(reward, device, cfg.reward_label, cfg.max_length)
    model, tok = load_policy(policy, device, cfg.peft, cfg.lora_r, cfg.lora_alpha)
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "max_seq_len", None)
    if context and cfg.max_length > context:
        raise KolmError(f"align.max_length={cfg.max_length} exceeds the model's context of {context} tokens; lower it")
    train_prompts, eval_prompts = load_prompts(
        cfg.prompts, cfg.prompt_field, cfg.prompt_min_words, cfg.prompt_max_words, cfg.eval_prompts, seed
    )
    if cfg.prompts:
        inputs.append(Path(cfg.prompts))
    reference = reference_of(model)
    sampling = dict(
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, device=device, max_length=cfg.max_length
    )
    progress.log(f"align: {method} on {policy}, reward {rew.name}, {len(train_prompts)} prompts")
    before = measure(model, tok, rew, eval_prompts, seed=seed + 1, **sampling)
    lr = _lr(cfg, method)
    t0 = time.perf_counter()
    details: dict[str, Any] = {"lr": lr, "peft": cfg.peft, "reward": rew.name}
    if method == "ppo":
        from kolm.align.ppo import train_ppo

        state = train_ppo(
            cfg, model, tok, reference, rew, train_prompts,
            policy_path=policy, metrics_path=out / "metrics.jsonl", seed=seed, device=device, lr=lr, progress=progress,
        )  # fmt: skip
        details.update(value_init=state.value_init, final_kl_coef=round(state.kl_coef, 5))
    elif method == "dpo":
        from kolm.align.dpo import sampled_pairs, train_dpo
        from kolm.data.tasks import read_preferences

        if cfg.preferences:
            pairs = read_preferences(cfg.preferences)
            inputs.append(Path(cfg.preferences))
        else:
            n_prompts = max(8, (cfg.steps * cfg.batch_size) // 2)
            pairs = sampled_pairs(
                model, tok, rew, train_prompts[:n_prompts], n_samples=cfg.dpo_samples,
                max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=seed, max_length=cfg.max_length,
            )  # fmt: skip
        n_val = max(1, int(len(pairs) * cfg.val_fraction)) if len(pairs) > 1 else 0
        details["pairs"] = len(pairs)
        details["held_out"] = train_dpo(
            cfg, model, tok, pairs[n_val:], pairs[:n_val],
            out=out, reference=None if getattr(model, "active_peft_config", None) else reference,
            seed=seed, device=device, lr=lr, progress=progress,
        )  # fmt: skip
    elif method == "grpo":
        from kolm.align.grpo import train_grpo

        train_grpo(
            cfg, model, tok, rew, train_prompts,
            out=out, reference=None if getattr(model, "active_peft_config", None) else reference,
            seed=seed, device=device, lr=lr, progress=progress,
        )  # fmt: skip
    else:
        raise KolmError(f"unknown alignment method {method!r}; choose reward, dpo, ppo or grpo")
    wall = time.perf_counter() - t0
    after = measure(model, tok, rew, eval_prompts, seed=seed + 1, reference=reference, **sampling)
    target = save_policy(model, tok, out, method, policy)
    samples = out / "samples.jsonl"
    samples.unlink(missing_ok=True)
    for i, p in enumerate(eval_prompts):
        append_jsonl(
            samples,
            {
                "prompt": p,
                "before": before.texts[i],
                "before_reward": before.rewards[i],
                "after": after.texts[i],
                "after_reward": after.rewards[i],
            },
        )
    write_json(
        out / "eval.json",
        {
            "method": method,
            "before": before.summary(),
            "after": after.summary(),
            "wall_time_s": round(wall, 2),
            **details,
            "output_dir": target.name,
        },
    )
    result = AlignResult(method, str(target), round(wall, 2), before, after, details, inputs)
    progress.log(
        f"align: {method}: positive rate {before.positive_rate:.3f} -> {after.positive_rate:.3f}, "
        f"mean reward {before.mean_reward:+.3f} -> {after.mean_reward:+.3f}, KL {after.kl:.3f}, {wall:.1f} s"
    )
    result.details["eval_prompts"] = eval_prompts
    return result


def _summary(cfg: AlignConfig, result: AlignResult) -> str:
    parts = ["# Alignment (정렬)", ""]
    if result.method == "reward":
        d = result.details
        parts += [
            f"Reward model trained on {d['train_pairs']} preference pairs (Bradley-Terry), scored on {d['val_pairs']} held-out pairs.",
            "",
            "| pairwise accuracy before | after | mean margin | wall time (s) |",
            "|---|---|---|---|",
            f"| {d['initial_accuracy']:.3f} | **{d['accuracy']:.3f}** | {d['mean_margin']:.3f} | {d['wall_time_s']} |",
            "",
            "![reward margins](reward/margins.png)",
        ]
        return "\n".join(parts) + "\n"
    d = result.details
    parts += [
        f"Method **{result.method}** ({d.get('peft')}, lr {d.get('lr')}), reward `{d.get('reward')}`. "
        f"{result.before.n if result.before else 0} held-out prompts sampled at temperature {cfg.temperature}, "
        f"{cfg.max_new_tokens} new tokens, before and after; KL(policy ‖ reference) summed over each response.",
        "",
        before_after_table([result]),
    ]
    held = d.get("held_out")
    if held:
        parts += ["", "DPO on held-out pairs: " + ", ".join(f"{k} {v}" for k, v in held.items())]
    if result.before and result.after and cfg.samples_shown:
        parts += [
            "",
            "Samples (same prompts, same seed):",
            "",
            _samples_table(d["eval_prompts"], result.before, result.after, cfg.samples_shown),
        ]
    return "\n".join(parts) + "\n"


def run(ctx: StageContext) -> StageResult:
    """Align the run's model with `align.method`."""
    cfg = ctx.cfg.align
    result = align(
        cfg,
        policy=policy_dir(cfg, ctx.stage_dir("pretrain")),
        reward=reward_spec(cfg, ctx.stage_dir("finetune")) if cfg.method != "reward" else None,
        out=ctx.out,
        seed=ctx.cfg.seed,
        device=stage_device(cfg, ctx),
        progress=ctx.progress,
    )
    for path in dict.fromkeys(result.inputs):
        ctx.input(path)
    (ctx.out / "summary.md").write_text(_summary(cfg, result), encoding="utf-8")
    m = result.method
    metrics: dict[str, Any] = {f"{m}.wall_time_s": result.wall_time_s}
    if result.before and result.after:
        for k in ("positive_rate", "mean_reward"):
            metrics[f"{m}.{k}_before"] = getattr(result.before, k)
            metrics[f"{m}.{k}_after"] = getattr(result.after, k)
        metrics[f"{m}.kl"] = result.after.kl
    elif m == "reward":
        metrics["reward.accuracy"] = result.details["accuracy"]
    return StageResult(
        outputs={m: ctx.output(Path(result.output_dir)), "summary": ctx.output(ctx.out / "summary.md")}, metrics=metrics
    )
