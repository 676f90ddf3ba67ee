"""The demo model's recipe: validation bits per character of the `tiny` preset under config overrides.

Each variant runs data -> tokenizer -> pretrain through the public API
(`load_config("tiny", overrides)` + `run_stage`) in `runs/tiny-recipe/<name>`;
variants with the same data and tokenizer settings share one curated corpus
and tokenizer (linked into each run). Prints the final val bits/char, the
pretrain stage's wall time, the last training loss and every evaluation.

Usage (repo root; one `name:overrides` argument per variant):

    .venv/bin/python benchmarks/bench_tiny_recipe.py "preset:" "v2000:tokenizer.vocab_size=2000" \\
        "s800:pretrain.max_steps=800 pretrain.warmup_steps=40 pretrain.eval_every=200"
    # the corpus before the 2026-12-01 additions, as a file source:
    .venv/bin/python benchmarks/bench_tiny_recipe.py \\
        "old:data.sources.0.kind=file data.sources.0.path=/tmp/oldcorpus data.sources.0.text_field=text \\
        pretrain.max_steps=200 pretrain.warmup_steps=20 pretrain.eval_every=50"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = Path("runs/tiny-recipe")


def run_variant(name: str, overrides: list[str]) -> dict:
    from kolm.config import load_config
    from kolm.progress import Progress
    from kolm.run import run_stage

    quiet = Progress(enabled=False)
    overrides = [*overrides, "tokenizer.compare=[]"]
    upstream = sorted(o for o in overrides if o.startswith(("data.", "tokenizer.", "seed=")))
    shared = ROOT / ("_corpus-" + hashlib.sha1("\n".join(upstream).encode()).hexdigest()[:10])
    if not (shared / "tokenizer" / "manifest.json").exists():
        scfg = load_config("tiny", [*overrides, f"run_dir={shared}"])
        run_stage(scfg, "data", progress=quiet)
        run_stage(scfg, "tokenizer", progress=quiet)
    run_dir = ROOT / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    for stage in ("data", "tokenizer"):
        (run_dir / stage).symlink_to((shared / stage).resolve())
    run_stage(load_config("tiny", [*overrides, f"run_dir={run_dir}"]), "pretrain", progress=quiet)
    manifest = json.loads((run_dir / "pretrain" / "manifest.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    return {
        "name": name,
        "overrides": overrides[:-1],
        "val_bpc": manifest["metrics"].get("val_bpc"),
        "stage_s": manifest["wall_time_s"],
        "train_loss": rows[-1]["loss"],
        "evals": [(r["step"], round(r["val_bpc"], 3)) for r in rows if "val_bpc" in r],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="name:space-separated overrides (name: alone = the preset)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--json", default="", help="write the results to this JSON file")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    results = []
    print("| variant | val bits/char | pretrain stage s | last train loss | evaluations (step, bits/char) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for arg in args.variants:
        name, _, overrides = arg.partition(":")
        t0 = time.perf_counter()
        r = run_variant(name, overrides.split())
        results.append(r)
        print(
            f"| {name} | {r['val_bpc']:.3f} | {r['stage_s']:.1f} | {r['train_loss']:.3f} | {r['evals']} |"
            f"  ({time.perf_counter() - t0:.0f} s with data and tokenizer)",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
