"""NSMC real-data benchmark: kolm (pretrain from scratch + fine-tune) vs a TF-IDF baseline.

Two systems, trained on `../shared/data/nsmc/train.tsv` and scored on `nsmc/test.tsv`:

(a) baseline: TF-IDF over character 1-4-grams + logistic regression (scikit-learn);
(b) kolm: curate the NSMC review corpus (`../shared/data/corpus`, which excludes the test
    reviews), train a tokenizer, pretrain a small GPT from scratch, fine-tune it as a classifier.
    Driven through the public API (`load_config` + `run_stage`) with `configs/nsmc.yaml`.

The baseline is the bar: a language-model pipeline that does not beat it has not earned its cost.

Usage (repo root):

    .venv/bin/python benchmarks/bench_nsmc.py --skip-lm                       # baseline only (~30-50 s)
    .venv/bin/python benchmarks/bench_nsmc.py --compare --compare-steps 60 --compare-max-eval 1000
                                      # everything as recorded in RESULTS.md (~35 min on 2 quiet cores)
    .venv/bin/python benchmarks/bench_nsmc.py --pretrain-minutes 45 --finetune-steps 9000   # the 90-minute budget
    .venv/bin/python benchmarks/bench_nsmc.py --max-docs 20000 --pretrain-steps 30 --finetune-steps 20 \
        --max-eval 500 --run-dir runs/nsmc-smoke pretrain.warmup_steps=5      # smoke test (a few minutes)
    .venv/bin/python benchmarks/bench_nsmc.py --stages pretrain,finetune --pretrain-steps 1800
                                      # continue a stopped run (WSD schedule: resume with fewer steps to decay now)

Stage CPU time is read from each stage's manifest (`wall_time_s`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / "../shared/data").resolve()
NSMC_TRAIN = SHARED / "nsmc" / "train.tsv"
NSMC_TEST = SHARED / "nsmc" / "test.tsv"
CORPUS = SHARED / "corpus" / "nsmc_reviews.jsonl.gz"
CONFIG = REPO / "configs" / "nsmc.yaml"


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    """Texts and labels of an NSMC-format tsv (id, document, label; header row)."""
    texts: list[str] = []
    labels: list[int] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for row in reader:
            if len(row) < 3:
                continue
            texts.append(row[1])
            labels.append(int(row[2]))
    return texts, labels


# ----------------------------------------------------------------------------
# (a) TF-IDF baseline


def run_baseline(max_train: int = 0) -> dict[str, float]:
    """TF-IDF char 1-4-grams (within word boundaries) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    t0 = time.perf_counter()
    c0 = time.process_time()
    x_train, y_train = read_tsv(NSMC_TRAIN)
    x_test, y_test = read_tsv(NSMC_TEST)
    if max_train:
        x_train, y_train = x_train[:max_train], y_train[:max_train]
    # char_wb: n-grams padded at word edges, so spacing (often missing in reviews) still carries signal.
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, sublinear_tf=True, max_features=500_000)
    xtr = vec.fit_transform(x_train)
    xte = vec.transform(x_test)
    clf = LogisticRegression(C=4.0, max_iter=1000, solver="liblinear")
    clf.fit(xtr, y_train)
    pred = clf.predict(xte)
    out = {
        "accuracy": float(accuracy_score(y_test, pred)),
        "macro_f1": float(f1_score(y_test, pred, average="macro")),
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "features": int(xtr.shape[1]),
    }
    print(
        f"[baseline] TF-IDF char 1-4 + LR: accuracy {out['accuracy']:.4f}  macro-F1 {out['macro_f1']:.4f}  "
        f"wall {out['wall_s']:.1f}s  cpu {out['cpu_s']:.1f}s  ({out['features']} features)",
        flush=True,
    )
    return out


# ----------------------------------------------------------------------------
# (b) kolm pipeline


def lm_overrides(args: argparse.Namespace) -> list[str]:
    """Budget knobs of the command line as config overrides (applied over configs/nsmc.yaml)."""
    ov: list[str] = []
    if args.max_docs:
        ov.append(f"data.sources.0.max_docs={args.max_docs}")
    if args.pretrain_steps:
        ov.append(f"pretrain.max_steps={args.pretrain_steps}")
    if args.finetune_steps:
        ov.append(f"finetune.max_steps={args.finetune_steps}")
    if args.finetune_method:
        ov.append(f"finetune.method={args.finetune_method}")
    if args.methods:
        ov.append(f"finetune.compare_methods=[{args.methods}]")
    if args.max_eval:
        ov.append(f"finetune.classify.max_eval={args.max_eval}")
    if args.run_dir:
        ov.append(f"run_dir={args.run_dir}")
    ov.extend(args.override or [])
    return ov


def read_manifest(run_dir: Path, stage_dir: str, name: str = "manifest.json") -> dict:
    path = run_dir / stage_dir / name
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def seconds_per_step(cfg, warmup: int = 3, steps: int = 8) -> float:
    """Time pretraining steps of the configured model (median), to turn minutes into steps.

    The path the pretrain loop takes: same model, batch, sequence length,
    precision and optimizer; on CPUs the compiled forward asking for the loss
    alone (`skip_logits`), as `train/stage.py` sets it up. Random tokens; the
    first `warmup` steps (compilation, allocation) are not counted.
    """
    import torch
    from transformers import AutoTokenizer

    from kolm.run import resolve_device
    from kolm.train.loop import autocast_context, compiled_or_plain, resolve_precision
    from kolm.train.optim import build_adamw
    from kolm.train.stage import build_model

    device = resolve_device(cfg.device)
    on_cpu = torch.device(device).type == "cpu"
    tok = AutoTokenizer.from_pretrained(str(cfg.run_path / "tokenizer"))
    p = cfg.pretrain
    model = build_model(cfg.model, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id).to(device)
    opt = build_adamw(model, p.lr, p.weight_decay, (p.beta1, p.beta2))
    precision = resolve_precision(p.precision, device)
    forward = compiled_or_plain(model) if p.compile and on_cpu else model
    extra = {"skip_logits": True} if on_cpu else {}
    x = torch.randint(0, len(tok), (p.batch_size, p.seq_len), device=device)
    times = []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        with autocast_context(precision, device):
            loss = forward(input_ids=x, labels=x, **extra).loss
        loss.backward()
        if p.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    rest = sorted(times[warmup:])
    return rest[len(rest) // 2]


def run_lm(args: argparse.Namespace) -> dict:
    """Run data -> tokenizer -> pretrain -> finetune (and optionally compare) via the public API."""
    import torch

    from kolm.config import load_config
    from kolm.progress import Progress
    from kolm.run import run_stage

    torch.set_num_threads(args.threads)
    overrides = lm_overrides(args)
    cfg = load_config(str(CONFIG), overrides)
    run_dir = cfg.run_path
    print(f"[kolm] config {CONFIG.relative_to(REPO)} overrides {overrides} -> {run_dir}", flush=True)
    progress = Progress(enabled=args.progress)
    info: dict = {"overrides": overrides}
    stages = [x for x in args.stages.split(",") if x]
    for stage in stages:
        if stage == "pretrain" and args.pretrain_minutes and not args.pretrain_steps:
            # No wall-clock stop in the loop: measure the step time now and convert the budget to steps.
            sps = seconds_per_step(cfg)
            steps = max(cfg.pretrain.warmup_steps + 1, int(args.pretrain_minutes * 60 / sps))
            overrides.append(f"pretrain.max_steps={steps}")
            cfg = load_config(str(CONFIG), overrides)
            info["pretrain_probe_s_per_step"] = round(sps, 3)
            print(
                f"[kolm] probe: {sps:.2f} s/step -> pretrain.max_steps={steps} for {args.pretrain_minutes} min "
                f"(reproduce with --pretrain-steps {steps})",
                flush=True,
            )
        t0 = time.perf_counter()
        c0 = time.process_time()
        res = run_stage(cfg, stage, force=args.force, progress=progress)
        status = (
            "skipped (up to date)"
            if res is None
            else f"done: {json.dumps(res.metrics, ensure_ascii=False, default=str)[:400]}"
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        info.setdefault("process", {})[stage] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
        print(f"[kolm] {stage}: {status}  wall {wall:.1f}s  process cpu {cpu:.1f}s", flush=True)
    if args.compare:
        # Same base model, every method on the same reduced budget (steps, batch, evaluation subset).
        # finetune.lr=null: each method at its own default rate (methods.py); one rate for all would starve some.
        cov = overrides + [
            "finetune.lr=null",
            f"finetune.max_steps={args.compare_steps}",
            f"finetune.eval_every={args.compare_steps}",
            f"finetune.classify.max_eval={args.compare_max_eval}",
        ]
        ccfg = load_config(str(CONFIG), cov)
        t0 = time.perf_counter()
        run_stage(ccfg, "finetune", action="compare", force=args.force, progress=progress)
        print(f"[kolm] finetune compare: wall {time.perf_counter() - t0:.1f}s", flush=True)
        info["compare_overrides"] = cov
    out = collect(run_dir, args.compare)
    out.update(info)
    return out


def find_eval(run_dir: Path) -> dict:
    """The classifier's scores written by the finetune stage (`finetune/classify/eval.json`)."""
    path = run_dir / "finetune" / "classify" / "eval.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def pick(d: dict, *keys: str) -> float | None:
    """First numeric value among `keys`, looked up in `d["test"]` first, then in `d`."""
    for src in (d.get("test") if isinstance(d.get("test"), dict) else {}, d):
        for k in keys:
            if isinstance(src.get(k), (int, float)):
                return float(src[k])
    return None


def collect(run_dir: Path, compare: bool) -> dict:
    """Stage wall times and the classifier's scores, from the run directory only."""
    out: dict = {"run_dir": str(run_dir), "stages": {}}
    for stage in ("data", "tokenizer", "pretrain", "finetune"):
        m = read_manifest(run_dir, stage)
        out["stages"][stage] = {
            "wall_time_s": m.get("wall_time_s"),
            "status": m.get("status"),
            "metrics": m.get("metrics", {}),
        }
    ft = out["stages"]["finetune"]["metrics"]
    ev = find_eval(run_dir)
    src = ev or ft
    out["accuracy"] = pick(src, "test_accuracy", "accuracy") or pick(
        ft, "classify/test_accuracy", "classify_test_accuracy"
    )
    out["macro_f1"] = pick(src, "test_macro_f1", "macro_f1") or pick(
        ft, "classify/test_macro_f1", "classify_test_macro_f1"
    )
    out["eval"] = ev
    if compare:
        m = read_manifest(run_dir, "finetune", "manifest-compare.json")
        out["compare"] = {"wall_time_s": m.get("wall_time_s"), "metrics": m.get("metrics", {})}
        md = run_dir / "finetune" / "compare" / "compare.md"
        out["compare_md"] = [str(md)] if md.exists() else []
    return out


def fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.2f}%" if pct else f"{x:.1f}"


def print_table(base: dict | None, lm: dict | None) -> None:
    print("\n| system | test accuracy | macro-F1 | CPU time |")
    print("| --- | --- | --- | --- |")
    if base:
        print(
            f"| TF-IDF char 1-4-gram + LR | {fmt(base['accuracy'])} | {fmt(base['macro_f1'])} | {base['wall_s']:.0f} s |"
        )
    if lm:
        total = sum((s.get("wall_time_s") or 0.0) for s in lm["stages"].values())
        print(
            f"| kolm pretrain + fine-tune | {fmt(lm.get('accuracy'))} | {fmt(lm.get('macro_f1'))} | {total / 60:.1f} min |"
        )
        print("\n| kolm stage | wall time (manifest) |")
        print("| --- | --- |")
        for name, s in lm["stages"].items():
            w = s.get("wall_time_s")
            print(f"| {name} | {'n/a' if w is None else f'{w / 60:.1f} min'} |")
        if "compare" in lm:
            print(
                f"\nfinetune compare: wall {fmt(lm['compare'].get('wall_time_s'), pct=False)} s; tables: {lm.get('compare_md')}"
            )
            for p in lm.get("compare_md", []):
                print(Path(p).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-lm", action="store_true", help="run only the TF-IDF baseline")
    ap.add_argument("--skip-baseline", action="store_true", help="run only the kolm pipeline")
    ap.add_argument(
        "--pretrain-minutes",
        type=float,
        default=0.0,
        help="pretraining budget in minutes, turned into pretrain.max_steps by timing a few steps",
    )
    ap.add_argument("--pretrain-steps", type=int, default=0, help="pretraining steps (pretrain.max_steps)")
    ap.add_argument("--finetune-steps", type=int, default=0, help="fine-tuning optimizer steps (finetune.max_steps)")
    ap.add_argument("--finetune-method", default="", help="fine-tuning method of the main figure (default: config)")
    ap.add_argument("--methods", default="", help="comma list for `finetune compare` (default: config)")
    ap.add_argument(
        "--stages",
        default="data,tokenizer,pretrain,finetune",
        help="stages to run, comma separated (e.g. pretrain,finetune to continue a run; others are read as they are)",
    )
    ap.add_argument("--compare", action="store_true", help="also run `finetune compare` after the main run")
    ap.add_argument("--compare-steps", type=int, default=300, help="steps per method in `finetune compare`")
    ap.add_argument(
        "--compare-max-eval",
        type=int,
        default=5000,
        help="validation/test reviews scored per method in `finetune compare` (0 = all)",
    )
    ap.add_argument("--max-docs", type=int, default=0, help="curate at most this many corpus documents (smoke runs)")
    ap.add_argument("--max-eval", type=int, default=0, help="score at most this many test reviews (0 = all 50,000)")
    ap.add_argument("--run-dir", default="", help="run directory (default: runs/nsmc)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--force", action="store_true", help="re-run stages even if up to date")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    ap.add_argument("--json", default="", help="write all figures to this JSON file")
    ap.add_argument("override", nargs="*", help="extra key=value config overrides")
    args = ap.parse_args(argv)

    if not (NSMC_TRAIN.exists() and NSMC_TEST.exists() and CORPUS.exists()):
        print(f"skipped: the shared NSMC data is absent ({SHARED}); see ../shared/data/README.md", flush=True)
        return 0
    os.chdir(REPO)  # config paths (../shared/data, runs/) are relative to the repo root
    print(f"bench_nsmc {time.strftime('%Y-%m-%d %H:%M')}  cpus={os.cpu_count()}", flush=True)
    base = None if args.skip_baseline else run_baseline()
    lm = None if args.skip_lm else run_lm(args)
    print_table(base, lm)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"baseline": base, "kolm": lm}, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
