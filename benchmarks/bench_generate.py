"""Generation speed: kolm's engine on KolmGPT vs Hugging Face `generate()` on the exported hf-llama of the same weights.

Every side decodes greedily with EOS disabled, so all produce the same number
of tokens; each of ours is checked for the same tokens as HF's (greedy
agreement). Sides, rounds alternating so machine noise hits all of them:

* `HF generate`: the hf-llama export in fp32, as plain `transformers` loads it;
* `ours fp32`: kolm's engine on the same fp32 weights;
* `ours bf16`: the engine on bf16 weights (`load_model(..., quant="bf16")`),
  half the bytes per token; only on CPUs with native bf16 (AVX512-BF16/AMX);
* `ours bf16 compiled` (with --compile): the same with `Engine(compile=True)`,
  each decode step one compiled graph; the compile time is printed apart;
* `ours int8-wo`: int8 weight-only linear layers, the output head included
  (`load_model(..., quant="int8-wo")`), fp32 activations: a quarter of the
  fp32 weight bytes per token;
* `ours int8-wo bf16` / `... compiled` (bf16 CPUs; compiled with --compile):
  the same with bf16 activations (`--dtype bf16 --quant int8-wo`).

Per side: time to first token (a run with max_new_tokens=1), batch-1 decode
tokens/s ((N - 1) / (time for N tokens - TTFT)) and batch-8 throughput
(prompts of different lengths, left padding); best of `--rounds`. Then the
memory-bandwidth ceiling of batch-1 decode: bytes of weights (+ KV cache) read
per token / bandwidth, the bandwidth measured here by copying a tensor larger
than the last-level cache (DRAM) and one of the weights' size (as cached).

    .venv/bin/python benchmarks/bench_generate.py                      # `small` preset shape, random weights
    .venv/bin/python benchmarks/bench_generate.py --preset tiny --new-tokens 64
    .venv/bin/python benchmarks/bench_generate.py --model runs/small/pretrain/final --compile
"""

from __future__ import annotations

import argparse
import copy
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


def copy_bandwidth(nbytes: int, repeats: int = 5) -> float:
    """Bytes moved per second (read + write) by the best of `repeats` copies of an `nbytes` tensor."""
    a = torch.ones(nbytes // 4)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.numel() * 4 / best


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters one decode step reads (a tied matrix once: the LM head reads all of it)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total


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
    ap.add_argument("--no-bf16", action="store_true", help="leave out the bf16 sides")
    ap.add_argument("--no-int8", action="store_true", help="leave out the int8 weight-only sides")
    ap.add_argument(
        "--compile", action="store_true", help="add the compiled sides (Engine(compile=True)): bf16, int8-wo bf16"
    )
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
    from kolm.models.int8_weights import int8_weights_available, quantize_int8_weights
    from kolm.models.quant import cpu_native_bf16

    with tempfile.TemporaryDirectory() as tmp:
        ours, hf = build_pair(args, Path(tmp))
    c = ours.config
    V, N, P = c.vocab_size, args.new_tokens, args.prompt_tokens
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, V, (1, P), generator=g)
    lens = [P - 3 * i for i in range(args.batch)]  # different lengths -> left padding
    batch_prompts = [torch.randint(3, V, (n,), generator=g).tolist() for n in lens]
    one = [prompt[0].tolist()]

    def hf_run(n: int, prompts: list[list[int]]) -> list[list[int]]:
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
        with torch.inference_mode():
            out = hf.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=None,
            )
        return out[:, width:].tolist()

    def engine_run(engine: Engine):
        def run(n: int, prompts: list[list[int]]) -> list[list[int]]:
            params = SamplingParams(max_new_tokens=n, temperature=0, eos_token_ids=[])
            return [c.token_ids for c in engine.generate(prompts, params)]

        return run

    sides = {"HF generate": hf_run, "ours fp32": engine_run(Engine(ours))}
    bf16 = not args.no_bf16 and cpu_native_bf16()
    if bf16:
        ours16 = copy.deepcopy(ours).to(torch.bfloat16)
        sides["ours bf16"] = engine_run(Engine(ours16))
        if args.compile:
            sides["ours bf16 compiled"] = engine_run(Engine(ours16, compile=True))
    if not args.no_int8 and int8_weights_available():
        sides["ours int8-wo"] = engine_run(Engine(quantize_int8_weights(copy.deepcopy(ours))))
        if bf16:
            w8_16 = quantize_int8_weights(copy.deepcopy(ours).to(torch.bfloat16))
            sides["ours int8-wo bf16"] = engine_run(Engine(w8_16))
            if args.compile:
                sides["ours int8-wo bf16 compiled"] = engine_run(Engine(w8_16, compile=True))
    notes = []
    reference = hf_run(N, one)[0]
    for name, run in sides.items():  # warm-up (and compilation) + greedy agreement with HF, once before timing
        t0 = CLOCK()
        run(2, one)
        run(2, batch_prompts)
        run(N, batch_prompts)  # a compiled side compiles once per (batch, cache size): not inside the timed rounds
        if name != "HF generate":
            tokens = run(N, one)[0]
            agree = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), len(reference))
            notes.append(f"{name}: first {agree}/{N} greedy tokens identical to HF, warm-up {CLOCK() - t0:.1f} s")

    res: dict[str, dict[str, list[float]]] = {k: {"ttft": [], "decode": [], "batch": []} for k in sides}
    for r in range(args.rounds):
        for name, run in list(sides.items())[:: 1 if r % 2 == 0 else -1]:
            ttft = timed(lambda run=run: run(1, one))
            total = timed(lambda run=run: run(N, one))
            res[name]["ttft"].append(ttft * 1000)
            res[name]["decode"].append((N - 1) / max(total - ttft, 1e-9))
            res[name]["batch"].append(len(batch_prompts) * N / timed(lambda run=run: run(N, batch_prompts)))
    # Best of the rounds: on a shared machine the fastest round is the least disturbed one.
    best = {k: {m: (min(v) if m == "ttft" else max(v)) for m, v in d.items()} for k, d in res.items()}
    params = sum(p.numel() for p in ours.parameters())
    print(
        f"shape: d={c.d_model} L={c.n_layers} H={c.n_heads} KV={c.n_kv_heads} ffn={c.ffn_dim} vocab={V} "
        f"({params / 1e6:.2f}M params); prompt {P} tokens, {N} new tokens, batch {args.batch}; "
        f"{torch.get_num_threads()} threads; {args.clock} clock; torch {torch.__version__}"
    )
    for note in notes:
        print(f"  {note}")
    h = best["HF generate"]
    print(f"\n| side | batch-1 decode tok/s | vs HF | TTFT ms | batch-{args.batch} tok/s | vs HF |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, o in best.items():
        print(
            f"| {name} | {o['decode']:.1f} | {o['decode'] / h['decode']:.2f}x | {o['ttft']:.1f} | "
            f"{o['batch']:.1f} | {o['batch'] / h['batch']:.2f}x |"
        )

    # -- the memory-bandwidth ceiling of batch-1 decode --------------------------------
    dram = copy_bandwidth(1 << 30)
    kv = 2 * c.n_layers * c.n_kv_heads * c.head_dim * (P + N // 2)  # KV-cache elements read per token, on average
    print("\n| weights | bytes read per token | ceiling at DRAM copy bandwidth | ceiling at cached copy bandwidth |")
    print("| --- | --- | --- | --- |")
    for label, size, kv_size in (("fp32", 4, 4), ("bf16", 2, 2), ("int8 (bf16 cache)", 1, 2)):
        nbytes = weight_bytes(ours) // 4 * size + kv * kv_size
        cached = copy_bandwidth(max(nbytes, 1 << 20))
        print(
            f"| {label} | {nbytes / 1e6:.1f} MB | {dram / nbytes:.0f} tok/s ({dram / 1e9:.1f} GB/s) | "
            f"{cached / nbytes:.0f} tok/s ({cached / 1e9:.1f} GB/s) |"
        )


if __name__ == "__main__":
    main()
