"""Alignment benchmark: steer NSMC review continuations towards positive sentiment with PPO, GRPO and DPO.

Starts from an NSMC run (`kolm pipeline --config nsmc`: a GPT pretrained on
the NSMC review corpus and its fine-tuned sentiment classifier). Prompts are
the first one to three words of NSMC test reviews (`--prompts` of them held
out for the measurement); the reward is the classifier's log-odds of 긍정.
For each method, from the same policy and with the same budget, it prints the
positive rate and mean reward of sampled continuations (temperature 1.0)
before and after, the KL to the reference per response and per token, the
response length and the wall time, then a few samples side by side.

Driven through the public API (`kolm.align.stage.align`), one method at a
time; each method's outputs land in `<run>/bench-align/<method>/`.

Usage (repo root):

    .venv/bin/python benchmarks/bench_align.py --run-dir runs/nsmc                 # 256 prompts, PPO, GRPO, DPO
    .venv/bin/python benchmarks/bench_align.py --run-dir runs/nsmc --methods ppo --steps 200
    .venv/bin/python benchmarks/bench_align.py --policy P --reward R --prompts 16 --steps 2   # any model and reward

The goal on a quiet machine: from about the base rate to >= 90% positive, with
a mean per-token KL small enough that the samples stay Korean.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

NSMC_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nsmc" / "test.tsv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/nsmc", help="an NSMC run: pretrain/final and finetune/classify")
    ap.add_argument("--policy", default=None, help="model to align (default: <run>/pretrain/final)")
    ap.add_argument(
        "--reward", default=None, help="reward model dir or module:function (default: <run>/finetune/classify)"
    )
    ap.add_argument("--prompts-file", default=str(NSMC_TEST), help="reviews the prompts are cut from (NSMC tsv)")
    ap.add_argument("--methods", default="ppo,grpo,dpo", help="comma-separated methods")
    ap.add_argument("--prompts", type=int, default=256, help="held-out prompts sampled before and after")
    ap.add_argument("--steps", type=int, default=100, help="rollout batches (ppo, grpo) or optimizer steps (dpo)")
    ap.add_argument("--batch-size", type=int, default=32, help="responses per rollout batch, pairs per DPO step")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: align's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--samples", type=int, default=5, help="samples printed per method")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    from kolm.align.config import AlignConfig
    from kolm.align.stage import align
    from kolm.progress import Progress
    from kolm.runtime import resolve_device

    run = Path(args.run_dir)
    policy = Path(args.policy) if args.policy else run / "pretrain" / "final"
    reward = args.reward or str(run / "finetune" / "classify")
    if not Path(policy).exists():
        print(f"no policy at {policy}: run `kolm pipeline --config nsmc` first, or pass --policy", file=sys.stderr)
        return 2
    prompts_file = args.prompts_file if Path(args.prompts_file).exists() else None
    if prompts_file is None:
        print(f"{args.prompts_file} not found: using the embedded reviews", file=sys.stderr)
    device = resolve_device(args.device)
    out = run / "bench-align"
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        cfg = AlignConfig(
            method=method,
            prompts=prompts_file,
            prompt_field="document",
            eval_prompts=args.prompts,
            steps=args.steps,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            lr=args.lr,
            temperature=1.0,
        )
        t0 = time.perf_counter()
        r = align(cfg, policy=policy, reward=reward, out=out, seed=args.seed, device=device, progress=Progress())
        total = time.perf_counter() - t0
        b, a = r.before, r.after
        rows.append(
            {
                "method": method,
                "positive_before": b.positive_rate,
                "positive_after": a.positive_rate,
                "reward_before": b.mean_reward,
                "reward_after": a.mean_reward,
                "kl": a.kl,
                "kl_per_token": a.kl_per_token,
                "response_tokens": a.response_tokens,
                "train_s": r.wall_time_s,
                "total_s": round(total, 1),
                "samples": [
                    {"prompt": p, "before": b.texts[i], "after": a.texts[i]}
                    for i, p in enumerate(r.details["eval_prompts"][: args.samples])
                ],
            }
        )
    print(f"\npolicy {policy}, reward {reward}, {args.prompts} prompts, temperature 1.0, device {device}\n")
    print("| method | positive before | after | reward before | after | KL | KL/token | tokens | train s | total s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['positive_before']:.3f} | {r['positive_after']:.3f} | {r['reward_before']:.3f} | "
            f"{r['reward_after']:.3f} | {r['kl']:.3f} | {r['kl_per_token']:.4f} | {r['response_tokens']:.1f} | "
            f"{r['train_s']:.0f} | {r['total_s']:.0f} |"
        )
    for r in rows:
        print(f"\n{r['method']} samples (before -> after):")
        for s in r["samples"]:
            print(f"  {s['prompt']!r}: {s['before']!r} -> {s['after']!r}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
