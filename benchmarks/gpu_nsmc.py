"""NSMC on a GPU: the `nsmc` preset's model pretrained and fine-tuned, and the four architectures compared.

For a GPU machine that cannot reach the data folder: it takes the curated NSMC review corpus
(`data/{train,validation}/*.parquet`, what `kolm data --config nsmc` writes), its tokenizer and
`nsmc/train.tsv` from paths, and calls the stages' typed functions directly (no run-directory bookkeeping):

1. `pretrain` of the `nsmc` preset's GPT (5.2M parameters) for --pretrain-steps steps;
2. `finetune` of that model as the NSMC sentiment classifier (full fine-tuning, --finetune-steps, batches by
   length), validated on 2% of the training reviews (the test set is scored elsewhere, on the CPU);
3. `compare_archs` of GPT, Mamba-2, RWKV-7 and DeepSeek (MoE + MLA) at that size on the same corpus and
   tokenizer, --arch-steps steps each (0 skips it), with decode latency at 128 to 8,192 tokens.

    python benchmarks/gpu_nsmc.py --data runs/nsmc/data --tokenizer runs/nsmc/tokenizer \\
        --nsmc-train ../shared/data/nsmc/train.tsv --out /tmp/gpu_nsmc

Writes into --out: pretrain/ (with final/), finetune/classify/ (model/, eval.json), arch/ (compare.*), and
gpu_nsmc.json with the headline numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="curated corpus folder (train/ and validation/)")
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--nsmc-train", type=Path, required=True, help="nsmc/train.tsv")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pretrain-steps", type=int, default=1800)
    ap.add_argument("--finetune-steps", type=int, default=3000)
    ap.add_argument("--arch-steps", type=int, default=600)
    args = ap.parse_args()

    import torch

    from kolm.config import load_config
    from kolm.finetune.trainer import finetune
    from kolm.train.compare import compare_archs
    from kolm.train.stage import pretrain

    preset = Path(__file__).resolve().parents[1] / "src" / "kolm" / "presets" / "nsmc.yaml"
    overrides = [
        f"device={args.device}",
        f"pretrain.max_steps={args.pretrain_steps}",
        f"pretrain.save_every={args.pretrain_steps}",
        f"finetune.max_steps={args.finetune_steps}",
        f"finetune.classify.train={args.nsmc_train}",
        "finetune.classify.test=null",
    ]
    cfg = load_config(str(preset), overrides, run_dir=args.out)
    summary: dict = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device}

    t0 = time.perf_counter()
    final = pretrain(
        cfg.model, cfg.pretrain, data_dir=args.data, tokenizer_dir=args.tokenizer, out=args.out / "pretrain",
        seed=cfg.seed, device=args.device,
    )  # fmt: skip
    summary["pretrain"] = {**{k: final.get(k) for k in ("val_loss", "val_bpc", "tok_per_s", "steps")}}
    summary["pretrain"]["wall_s"] = round(time.perf_counter() - t0, 1)
    print("pretrain:", json.dumps(summary["pretrain"]), flush=True)

    t0 = time.perf_counter()
    res = finetune(
        cfg.finetune, "classify", "full", base_model=args.out / "pretrain" / "final",
        out=args.out / "finetune" / "classify", seed=cfg.seed, device=args.device,
    )  # fmt: skip
    summary["finetune"] = {
        "validation": res.validation,
        "steps": res.steps,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print("finetune:", json.dumps(summary["finetune"]), flush=True)

    if args.arch_steps > 0:
        p = cfg.pretrain
        arch_overrides = [
            f"pretrain.max_steps={args.arch_steps}",
            "pretrain.warmup_steps=50",
            f"pretrain.eval_every={max(1, args.arch_steps // 4)}",
            "pretrain.eval_batches=16",
            f"pretrain.save_every={args.arch_steps}",
        ]
        p = load_config(str(preset), overrides + arch_overrides, run_dir=args.out).pretrain
        arch_out = args.out / "arch"
        for arch in ("gpt", "mamba2", "rwkv7", "deepseek"):  # the corpus packed once, by step 1
            (arch_out / arch).mkdir(parents=True, exist_ok=True)
            link = arch_out / arch / "packed"
            if not link.exists():
                link.symlink_to((args.out / "pretrain" / "packed").resolve(), target_is_directory=True)
        t0 = time.perf_counter()
        results = compare_archs(
            cfg.model, p, ["gpt", "mamba2", "rwkv7", "deepseek"], data_dir=args.data, tokenizer_dir=args.tokenizer,
            out=arch_out, seed=0, device=args.device, lengths=(128, 512, 2048, 8192), isolate=False,
        )  # fmt: skip
        summary["arch"] = {
            a: {k: r.get(k) for k in ("params_total", "params_active", "val_loss", "val_bpc", "train_tok_per_s")}
            for a, r in results["archs"].items()
        }
        summary["arch_wall_s"] = round(time.perf_counter() - t0, 1)
        print((arch_out / "compare.md").read_text(encoding="utf-8"), flush=True)
    (args.out / "gpu_nsmc.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
