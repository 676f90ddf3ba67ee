"""Training throughput on this machine: KolmGPT vs Hugging Face LlamaForCausalLM of identical shape.

Both models get the same plain loop (forward with labels, backward, clip,
fused AdamW step), the same random token batches and the same thread count;
the runs alternate in rounds so that machine noise hits both. Prints tokens/s
for each and the ratio ours / HF.

    .venv/bin/python benchmarks/bench_train.py                 # the `small` preset shape
    .venv/bin/python benchmarks/bench_train.py --preset tiny --steps 10
    .venv/bin/python benchmarks/bench_train.py --profile       # top ops of our model (torch.profiler)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build_pair(preset: str, vocab: int):
    """(ours, hf) with the preset's model shape, identically initialised where shapes allow."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from kolm.config import load_config
    from kolm.train.stage import build_model

    cfg = load_config(preset)
    m, g = cfg.model, cfg.model.gpt
    torch.manual_seed(0)
    ours = build_model(m, vocab, 1, 2, 0)
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=m.d_model,
            intermediate_size=g.ffn_dim,
            num_hidden_layers=m.n_layers,
            num_attention_heads=g.n_heads,
            num_key_value_heads=g.n_kv_heads,
            max_position_embeddings=m.max_seq_len,
            rope_theta=g.rope_theta,
            rms_norm_eps=m.norm_eps,
            tie_word_embeddings=m.tie_embeddings,
            attention_bias=False,
            mlp_bias=False,
        )
    )
    return cfg, ours, hf


def run_steps(model, batches, precision: str) -> float:
    """Time len(batches) training steps; return tokens/s."""
    from kolm.train.loop import autocast_context
    from kolm.train.optim import build_adamw

    model.train()
    opt = build_adamw(model, 1e-4)
    tokens = 0
    t0 = time.perf_counter()
    for ids in batches:
        with autocast_context(precision, "cpu"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += ids.numel()
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's pretrain.batch_size")
    ap.add_argument("--seq-len", type=int, default=None, help="default: the preset's pretrain.seq_len")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true", help="print the top operators of both models")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg, ours, hf = build_pair(args.preset, args.vocab)
    bs = args.batch_size or cfg.pretrain.batch_size
    T = args.seq_len or cfg.pretrain.seq_len
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab, (bs, T), generator=g) for _ in range(args.steps)]
    n_ours = sum(p.numel() for p in ours.parameters())
    n_hf = sum(p.numel() for p in hf.parameters())
    print(
        f"shape {args.preset}: d={cfg.model.d_model} L={cfg.model.n_layers} H={cfg.model.gpt.n_heads} "
        f"KV={cfg.model.gpt.n_kv_heads} ffn={cfg.model.gpt.ffn_dim} vocab={args.vocab}; batch {bs}x{T}; "
        f"params ours {n_ours / 1e6:.2f}M, HF {n_hf / 1e6:.2f}M; {torch.get_num_threads()} threads; "
        f"{args.precision}; torch {torch.__version__}"
    )

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, model in (("ours", ours), ("hf", hf)):
            run_steps(model, batches[:1], args.precision)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                run_steps(model, batches[:2], args.precision)
            print(f"--- {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        return

    for model in (ours, hf):  # warm-up (allocator, kernels)
        run_steps(model, batches[:1], args.precision)
    rates: dict[str, list[float]] = {"ours": [], "hf": []}
    for r in range(args.rounds):
        order = (("ours", ours), ("hf", hf)) if r % 2 == 0 else (("hf", hf), ("ours", ours))
        for name, model in order:
            rates[name].append(run_steps(model, batches, args.precision))
        print(f"round {r + 1}: ours {rates['ours'][-1]:,.0f} tok/s, HF {rates['hf'][-1]:,.0f} tok/s")
    ours_m, hf_m = statistics.median(rates["ours"]), statistics.median(rates["hf"])
    print(f"median: ours {ours_m:,.0f} tok/s, HF Llama {hf_m:,.0f} tok/s, ratio {ours_m / hf_m:.2f}x")


if __name__ == "__main__":
    main()
