"""Generation speed: kolm's engine on KolmGPT vs Hugging Face `generate()` on the exported hf-llama of the same weights.

Both decode greedily with EOS disabled, so they produce exactly the same
number of tokens (the script checks that the tokens are identical too).
Measured per side, rounds alternating so machine noise hits both:

* time to first token (TTFT): a run with max_new_tokens=1 (prefill + one token);
* batch-1 decode tokens/s: (N - 1) / (time for N tokens - TTFT);
* batch-8 throughput: 8 * N / time, prompts of different lengths (left padding).

Each figure is the best of `--rounds` rounds.

    .venv/bin/python benchmarks/bench_generate.py                      # `small` preset shape, random weights
    .venv/bin/python benchmarks/bench_generate.py --preset tiny --new-tokens 64
    .venv/bin/python benchmarks/bench_generate.py --model runs/small/pretrain/final
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def build_pair(args: argparse.Namespace, tmp: Path):
    """(ours, hf-llama) with identical weights: from --model, or the preset's shape with random init.

    The Llama side is what `kolm export --format hf-llama` writes: exported and
    reloaded for --model, converted in memory (the same conversion) otherwise.
    """
    from transformers import LlamaForCausalLM

    from kolm.export.hf_llama import export_hf_llama, to_llama
    from kolm.models.loading import load_model
    from kolm.models.registry import build_causal_lm

    if args.model:
        export_hf_llama(args.model, tmp / "hf-llama")
        ours, _ = load_model(args.model)
        hf = LlamaForCausalLM.from_pretrained(tmp / "hf-llama").eval()
        return ours, hf
    from kolm.config import load_config

    cfg = load_config(args.preset)
    torch.manual_seed(0)
    ours = build_causal_lm(cfg.model, args.vocab, 1, 2, 0).eval()
    return ours, to_llama(ours).eval()


CLOCK = time.perf_counter


def timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--model", default=None, help="a KolmGPT model dir instead of random weights")
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="weights of both sides")
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
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    from kolm.infer.engine import Engine, SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        ours, hf = build_pair(args, Path(tmp))
    if args.dtype == "bf16":
        ours, hf = ours.to(torch.bfloat16), hf.to(torch.bfloat16)
    c = ours.config
    V, N, P = c.vocab_size, args.new_tokens, args.prompt_tokens
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, V, (1, P), generator=g)
    lens = [P - 3 * i for i in range(args.batch)]  # different lengths -> left padding
    batch_prompts = [torch.randint(3, V, (n,), generator=g).tolist() for n in lens]
    engine = Engine(ours)

    def ours_run(n: int, prompts: list[list[int]]):
        return engine.generate(prompts, SamplingParams(max_new_tokens=n, temperature=0, eos_token_ids=[]))

    def hf_run(n: int, prompts: list[list[int]]):
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
        with torch.inference_mode():
            return hf.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=None,
            )

    one = [prompt[0].tolist()]
    # Same tokens from both sides (greedy), checked once before timing.
    a = ours_run(N, one)[0].token_ids
    b = hf_run(N, one)[0, P:].tolist()
    agree = a == b
    res: dict[str, dict[str, list[float]]] = {k: {"ttft": [], "decode": [], "batch": []} for k in ("ours", "hf")}
    for _ in range(args.rounds):
        for name, run in (("ours", ours_run), ("hf", hf_run)):
            run(2, one)  # warm-up
            ttft = timed(lambda run=run: run(1, one))
            total = timed(lambda run=run: run(N, one))
            res[name]["ttft"].append(ttft * 1000)
            res[name]["decode"].append((N - 1) / max(total - ttft, 1e-9))
            res[name]["batch"].append(len(batch_prompts) * N / timed(lambda run=run: run(N, batch_prompts)))
    # Best of the rounds: on a shared machine the fastest round is the least disturbed one.
    med = {k: {m: (min(v) if m == "ttft" else max(v)) for m, v in d.items()} for k, d in res.items()}
    params = sum(p.numel() for p in ours.parameters())
    print(
        f"shape: d={c.d_model} L={c.n_layers} H={c.n_heads} KV={c.n_kv_heads} ffn={c.ffn_dim} vocab={V} "
        f"({params / 1e6:.2f}M params); prompt {P} tokens, {N} new tokens, batch {args.batch}; "
        f"{torch.get_num_threads()} threads; {args.dtype}; {args.clock} clock; torch {torch.__version__}; "
        f"greedy tokens identical: {agree}"
    )
    print("| metric | kolm engine | HF generate (hf-llama) | ratio |")
    print("| --- | --- | --- | --- |")
    o, h = med["ours"], med["hf"]
    print(f"| batch-1 decode tok/s | {o['decode']:.1f} | {h['decode']:.1f} | {o['decode'] / h['decode']:.2f}x |")
    print(f"| time to first token (ms) | {o['ttft']:.1f} | {h['ttft']:.1f} | {h['ttft'] / o['ttft']:.2f}x faster |")
    print(f"| batch-{args.batch} tok/s | {o['batch']:.1f} | {h['batch']:.1f} | {o['batch'] / h['batch']:.2f}x |")


if __name__ == "__main__":
    main()
