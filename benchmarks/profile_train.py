"""Where a pretraining step spends its time: kernel time by category, idle share, tokens/s and MFU.

Builds a preset's model the way the pretrain stage does (`train.stage.build_model`, the loop's
`compiled_or_plain`, its fused AdamW, bf16 autocast where the preset's precision resolves to it, the
loss asked for alone) and profiles whole optimizer steps (every accumulation micro-step, clipping and the
optimizer) on random tokens after warm-up steps (compilation). On CUDA the kernels are summed from the
device timeline, so the table also shows how much of the step the GPU sat idle (launch overhead, the
Python between kernels, synchronisation); on a CPU the operators are summed instead.

Categories, by kernel/operator name: matmul (GEMMs: cuBLAS/CUTLASS/`mm`), attention (flash/SDPA
kernels and `bmm`), fused/elementwise (Triton, norms, activations, casts), optimizer (AdamW, grad-norm
clipping), communication (NCCL), memory (copies, fills), other.

    .venv/bin/python benchmarks/profile_train.py --preset tiny --steps 2          # CPU, to check it here
    python3 benchmarks/profile_train.py --preset base --device cuda --vocab 32000 # what gpu_check.sh runs
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import torch

CATEGORIES = [  # first match wins
    ("communication", re.compile(r"nccl|all_?reduce|all_?gather|reduce_?scatter", re.I)),
    ("optimizer", re.compile(r"adam|multi_tensor|foreach|clip_grad", re.I)),
    ("matmul", re.compile(r"^triton_tem_fused_(add)?mm|^triton_tem_fused_bmm", re.I)),  # inductor's GEMM templates
    ("fused/elementwise", re.compile(r"^triton_|cpp_fused", re.I)),  # inductor's generated kernels
    ("attention", re.compile(r"flash|fmha|attention|sdpa|bmm|softmax", re.I)),
    ("matmul", re.compile(r"gemm|cutlass|cublas|xmma|nvjet|aten::mm$|aten::addmm|aten::matmul|aten::linear", re.I)),
    ("memory", re.compile(r"memcpy|memset|copy_|fill_|aten::cat|aten::index|zero_", re.I)),
    ("fused/elementwise", re.compile(r"elementwise|vectorized|reduce|norm|silu|mul|add|exp|cast", re.I)),
]


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps profiled")
    ap.add_argument("--warmup", type=int, default=2, help="optimizer steps before profiling (compilation)")
    ap.add_argument("--accum", type=int, default=None, help="micro-steps per optimizer step (default: the preset's)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default="", help="write the table to this JSON file")
    ap.add_argument("--trace", default="", help="write a Chrome trace (chrome://tracing, Perfetto) here")
    args = ap.parse_args()

    from torch.profiler import ProfilerActivity, profile

    from kolm.config import load_config
    from kolm.models.registry import flops_per_token
    from kolm.train.loop import autocast_context, compiled_or_plain
    from kolm.train.metrics import mfu, peak_flops
    from kolm.train.optim import build_adamw
    from kolm.train.stage import build_model

    cfg = load_config(args.preset)
    p, dev = cfg.pretrain, args.device
    cuda = dev.startswith("cuda")
    precision = (
        p.precision if p.precision != "auto" else ("bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32")
    )
    if p.precision == "auto" and not cuda:
        from kolm.models.quant import cpu_native_bf16

        precision = "bf16" if cpu_native_bf16() else "fp32"
    torch.manual_seed(0)
    model = build_model(cfg.model, args.vocab, 1, 2, 0).to(dev).train()
    forward = model if args.no_compile or not p.compile else compiled_or_plain(model, print)
    opt = build_adamw(model, p.lr)
    B, T = p.batch_size, p.seq_len
    accum = args.accum or max(1, (p.tokens_per_step or B * T) // (B * T))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab, (B, T), generator=g).to(dev) for _ in range(accum)]

    def step() -> None:
        for ids in batches:
            with autocast_context(precision, dev):
                loss = forward(input_ids=ids, labels=ids, skip_logits=True).loss / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    print(f"warm-up ({args.warmup} steps, compilation included): {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    wall = (time.perf_counter() - t0) / args.steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        profiled = (time.perf_counter() - t0) / args.steps  # the shares below are of this (profiling slows the CPU)
    if args.trace:
        prof.export_chrome_trace(args.trace)

    # Device kernels on CUDA (self time on the GPU); on a CPU, operators' self CPU time, where a compiled
    # graph's own C++ kernels show up as the self time of its "## Call CompiledFxGraph" entry.
    totals: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        t = (e.self_device_time_total if cuda else e.self_cpu_time_total) / 1e6 / args.steps  # s per step
        if t <= 0:
            continue
        if e.key.startswith("## Call CompiledFxGraph"):
            if not cuda:
                totals["fused/elementwise"] += t
        elif not e.key.startswith(("ProfilerStep", "## ", "Torch-Compiled Region", "CompiledFunction")):
            totals[category(e.key)] += t
    busy = sum(totals.values())
    tokens = accum * B * T
    tok_s = tokens / wall
    flops = flops_per_token(model.config, T)
    util = mfu(tok_s, flops, peak_flops(dev))
    n_params = sum(q.numel() for q in model.parameters())
    print(
        f"{args.preset}: {n_params / 1e6:.1f}M parameters, {accum} x {B}x{T} tokens per step, {precision}, "
        f"compile {not args.no_compile and p.compile}, {dev} ({torch.cuda.get_device_name(0) if cuda else 'CPU'})"
    )
    print(
        f"step {wall * 1e3:,.1f} ms ({profiled * 1e3:,.1f} ms profiled); {tok_s:,.0f} tokens/s; "
        f"MFU {'n/a' if util is None else f'{util:.1%}'}"
    )
    what = "GPU kernel time" if cuda else "operator self time"
    print(f"\n| category | {what} per step (ms) | share of the profiled step |\n| --- | ---: | ---: |")
    rows = sorted(totals.items(), key=lambda kv: -kv[1])
    for label, t in rows:
        print(f"| {label} | {t * 1e3:,.1f} | {t / profiled:.1%} |")
    idle = max(profiled - busy, 0.0)
    print(f"| ({'GPU idle' if cuda else 'not in any operator'}) | {idle * 1e3:,.1f} | {idle / profiled:.1%} |")
    print(f"\nTop {what}:")
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=70))
    if args.json:
        out = {
            "preset": args.preset,
            "device": dev,
            "precision": precision,
            "step_ms": wall * 1e3,
            "profiled_step_ms": profiled * 1e3,
            "tok_per_s": tok_s,
            "mfu": util,
            "ms_per_step": {k: v * 1e3 for k, v in rows},
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
