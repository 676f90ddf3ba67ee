"""Training throughput on this machine: KolmGPT vs Hugging Face LlamaForCausalLM of identical shape, fp32 and bf16.

Every side gets the same plain loop (forward with labels, backward, clip,
fused AdamW step), the same random token batches and the same thread count;
the sides alternate in rounds so that machine noise hits all of them. Per
precision it prints tokens/s of:

* `ours`: the pretrain stage's path (`kolm.train.loop`): the forward compiled
  (`pretrain.compile`, `loop.compiled_or_plain`) and the loss asked for alone
  (`skip_logits=True`: chunked LM head + cross-entropy, no (B, T, V) logits);
* `ours eager`: the same without torch.compile;
* `ours bf16 weights` (bf16 only): bf16 parameters without autocast, with
  fp32 master copies in the optimizer, the third precision path (eager and
  compiled; the loop does not offer it yet);
* `HF Llama`: `LlamaForCausalLM` as it comes (eager, full logits),

and the ratio of each to HF. Compilation happens in the warm-up and is
reported apart (it is paid once per run).

    .venv/bin/python benchmarks/bench_train.py                      # the `small` preset shape, fp32 and bf16
    .venv/bin/python benchmarks/bench_train.py --precision bf16 --rounds 5
    .venv/bin/python benchmarks/bench_train.py --preset tiny --steps 10 --no-compile
    .venv/bin/python benchmarks/bench_train.py --profile            # top ops of each side (torch.profiler)
    .venv/bin/python benchmarks/bench_train.py --threads 1 --clock process   # on a busy machine
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch


def build_pair(preset: str, vocab: int):
    """(cfg, ours, hf) with the preset's model shape."""
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


class Side:
    """One contestant: a model, how its forward is called, its optimizer, and its precision path."""

    def __init__(
        self,
        name: str,
        model: Any,
        precision: str,
        compile: bool = False,
        loss_only: bool = False,
        bf16_weights: bool = False,
    ):
        from kolm.train.loop import compiled_or_plain
        from kolm.train.optim import build_adamw

        self.name, self.model, self.precision = name, model.train(), precision
        self.forward = compiled_or_plain(model, print) if compile else model
        self.extra = {"skip_logits": True} if loss_only else {}
        self.master: list[torch.Tensor] | None = None
        if bf16_weights:
            # fp32 master copies own the optimizer state; the model computes with bf16 copies of them.
            params = [p for p in model.parameters()]
            self.master = [p.detach().clone().float().requires_grad_() for p in params]
            self.opt = torch.optim.AdamW(self.master, lr=1e-4, fused=True)
            model.to(torch.bfloat16)
        else:
            self.opt = build_adamw(model, 1e-4)

    def step(self, ids: torch.Tensor) -> None:
        from kolm.train.loop import autocast_context

        autocast = "fp32" if self.master is not None else self.precision
        with autocast_context(autocast, "cpu"):
            loss = self.forward(input_ids=ids, labels=ids, **self.extra).loss
        loss.backward()
        params = list(self.model.parameters())
        if self.master is not None:
            for m, p in zip(self.master, params):
                m.grad = p.grad.float()
                p.grad = None
            torch.nn.utils.clip_grad_norm_(self.master, 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                torch._foreach_copy_(params, self.master)
            return
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def run(self, batches: list[torch.Tensor]) -> float:
        """Time len(batches) training steps; return tokens/s."""
        t0 = CLOCK()
        for ids in batches:
            self.step(ids)
        return sum(b.numel() for b in batches) / (CLOCK() - t0)


CLOCK = time.perf_counter


def compare(args: argparse.Namespace, precision: str, batches: list[torch.Tensor]) -> None:
    """All sides of one precision, interleaved; prints a table with ratios to HF."""
    import copy

    cfg, ours, hf = build_pair(args.preset, args.vocab)
    sides = [Side("HF Llama", hf, precision), Side("ours eager", copy.deepcopy(ours), precision, loss_only=True)]
    if not args.no_compile:
        sides.append(Side("ours", copy.deepcopy(ours), precision, compile=True, loss_only=True))
    if precision == "bf16":
        sides.append(Side("ours bf16 weights", copy.deepcopy(ours), precision, loss_only=True, bf16_weights=True))
        if not args.no_compile:
            sides.append(
                Side("ours bf16 weights compiled", copy.deepcopy(ours), precision, True, True, bf16_weights=True)
            )
    for side in sides:  # warm-up: allocator, kernels, and compilation of the compiled side
        t0 = time.perf_counter()
        side.run(batches[:2])
        print(f"  warm-up {side.name}: {time.perf_counter() - t0:.1f} s")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for side in sides:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                side.run(batches[:2])
            print(f"--- {side.name} ({precision})")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        return
    rates: dict[str, list[float]] = {s.name: [] for s in sides}
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            rates[side.name].append(side.run(batches))
        print(f"  round {r + 1}: " + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in rates.items()) + " tok/s")
    hf_m = statistics.median(rates["HF Llama"])
    print(f"\n{precision}: median tokens/s over {args.rounds} rounds of {len(batches)} steps")
    print("| side | tok/s | vs HF Llama |")
    print("| --- | --- | --- |")
    for name, v in rates.items():
        print(f"| {name} | {statistics.median(v):,.0f} | {statistics.median(v) / hf_m:.2f}x |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's pretrain.batch_size")
    ap.add_argument("--seq-len", type=int, default=None, help="default: the preset's pretrain.seq_len")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", default="both", choices=["both", "fp32", "bf16"])
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled side")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true", help="print the top operators of every side")
    ap.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "process"],
        help="process = CPU time of this process: steadier on a busy machine, meaningful with --threads 1",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    from kolm.config import load_config

    cfg = load_config(args.preset)
    bs = args.batch_size or cfg.pretrain.batch_size
    T = args.seq_len or cfg.pretrain.seq_len
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab, (bs, T), generator=g) for _ in range(args.steps)]
    m = cfg.model
    print(
        f"shape {args.preset}: d={m.d_model} L={m.n_layers} H={m.gpt.n_heads} KV={m.gpt.n_kv_heads} "
        f"ffn={m.gpt.ffn_dim} vocab={args.vocab}; batch {bs}x{T}; {torch.get_num_threads()} threads; "
        f"{args.clock} clock; torch {torch.__version__}\n"
    )
    for precision in ("fp32", "bf16") if args.precision == "both" else (args.precision,):
        compare(args, precision, batches)


if __name__ == "__main__":
    main()
