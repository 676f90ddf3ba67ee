"""Serving under load: `kolm serve` vs `transformers serve --continuous-batching`, same weights, same machine.

kolm serves a KolmGPT model dir; transformers serves its `kolm export --format
hf-llama` copy (the same tensors as a plain `LlamaForCausalLM`). Each server
runs alone, in its own process, with the same thread count. For 1, 4 and 16
concurrent clients, every client streams `/v1/completions` requests back to
back for `--duration` seconds (greedy, `--max-tokens` each, one of a few Korean
prompts), and the script reports:

* aggregate tokens/s (streamed text chunks over the whole window; each server
  sends one chunk per token);
* TTFT p50/p95 (request sent -> first text chunk) and inter-token latency
  p50/p95 (gaps between chunks of one stream);
* errors (failed or cut-off streams), and the server's resident memory at the
  start and end of each phase (flat memory = no leak per request).

    .venv/bin/python benchmarks/bench_serve.py                          # `small` preset shape, random weights
    .venv/bin/python benchmarks/bench_serve.py --model runs/small/pretrain/final --duration 60
    .venv/bin/python benchmarks/bench_serve.py --clients 1 4 --duration 5 --only kolm   # quick look
    .venv/bin/python benchmarks/bench_serve.py --dtype bf16             # both servers with bf16 weights

With random weights the text is noise but the work per token is the real
model's. Results go to stdout as a Markdown table (and `--json FILE`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROMPTS = [
    "오늘은 날씨가 맑고 바람이 시원해서",
    "이 영화는 배우들의 연기가 정말",
    "한국어 언어 모델을 처음부터 만들려면",
    "서울의 봄은 짧지만 꽃이 많이 피고",
]
REPO = Path(__file__).resolve().parents[1]


def build_model(preset: str, out: Path) -> Path:
    """A KolmGPT dir with the preset's shape, random weights and a byte-level BPE trained on the embedded corpus."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from kolm.config import load_config
    from kolm.models.registry import build_causal_lm

    texts = []
    for path in sorted((REPO / "src" / "kolm" / "assets" / "corpus").rglob("*")):
        if path.is_file() and path.suffix in (".txt", ".jsonl", ".md"):
            texts.append(path.read_text(encoding="utf-8"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8000, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts or PROMPTS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    cfg = load_config(preset)
    torch.manual_seed(0)
    model = build_causal_lm(cfg.model, len(fast), 1, 2, 0).eval()
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    import httpx

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {seconds}s")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    import psutil

    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20


def client_loop(base: str, model: str, max_tokens: int, stop_at: float, out: dict, seed: int) -> None:
    """Stream requests back to back until `stop_at`; record TTFT, gaps between chunks, tokens and errors."""
    import httpx

    i = seed
    with httpx.Client(timeout=120) as http:
        while time.monotonic() < stop_at:
            body = {
                "model": model,
                "prompt": PROMPTS[i % len(PROMPTS)],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
            }
            i += 1
            t0 = time.monotonic()
            last, tokens, done = None, 0, False
            try:
                with http.stream("POST", base + "/v1/completions", json=body) as r:
                    if r.status_code != 200:
                        out["errors"] += 1
                        r.read()
                        continue
                    for line in r.iter_lines():
                        if not line.startswith("data: "):
                            continue
                        data = line[6:]
                        if data == "[DONE]":
                            done = True
                            break
                        chunk = json.loads(data)
                        if "error" in chunk:
                            break
                        choices = chunk.get("choices", [])
                        # A finish_reason ends a stream well ([DONE] is not sent by every server).
                        done = done or any(c.get("finish_reason") for c in choices)
                        if not any(c.get("text") for c in choices):
                            continue
                        now = time.monotonic()
                        if last is None:
                            out["ttft"].append(now - t0)
                        else:
                            out["itl"].append(now - last)
                        last = now
                        tokens += 1
                        if now > stop_at + 30:
                            break
            except httpx.HTTPError:
                pass
            out["tokens"] += tokens
            if not done:
                out["errors"] += 1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def run_phase(base: str, model: str, clients: int, duration: float, max_tokens: int, pid: int) -> dict:
    out = {"ttft": [], "itl": [], "tokens": 0, "errors": 0}
    mem0 = rss_mb(pid)
    t0 = time.monotonic()
    stop_at = t0 + duration
    threads = [
        threading.Thread(target=client_loop, args=(base, model, max_tokens, stop_at, out, k)) for k in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    return {
        "clients": clients,
        "tokens_per_s": out["tokens"] / wall,
        "ttft_p50_ms": 1000 * pct(out["ttft"], 50),
        "ttft_p95_ms": 1000 * pct(out["ttft"], 95),
        "itl_p50_ms": 1000 * pct(out["itl"], 50),
        "itl_p95_ms": 1000 * pct(out["itl"], 95),
        "errors": out["errors"],
        "requests": len(out["ttft"]),
        "rss_start_mb": mem0,
        "rss_end_mb": rss_mb(pid),
    }


def serve(name: str, model_dir: Path, export_dir: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    bin_dir = Path(sys.executable).parent
    if name == "kolm":
        cmd = [str(bin_dir / "kolm"), "serve", "--model", str(model_dir), "--served-model-name", "bench"]
        cmd += ["--port", str(port), "--no-ui", "--max-batch", str(max(args.clients)), "--device", args.device]
        if args.dtype == "bf16":
            cmd += ["--quant", "bf16"]  # bf16 weights (the one loader's quant=bf16)
    else:
        cmd = [str(bin_dir / "transformers"), "serve", str(export_dir), "--continuous-batching"]
        cmd += ["--port", str(port), "--host", "127.0.0.1", "--device", args.device]
        cmd += ["--dtype", "bfloat16" if args.dtype == "bf16" else "float32"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a KolmGPT model dir (default: random weights, --preset shape)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument(
        "--dtype",
        choices=["fp32", "bf16"],
        default="fp32",
        help="weights of both servers (bf16: CPUs with AMX/AVX512-BF16)",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OMP threads of each server")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=["kolm", "transformers"], default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    from kolm.export.hf_llama import export_hf_llama

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else build_model(args.preset, Path(tmp) / "kolm")
        export_dir = export_hf_llama(model_dir, Path(tmp) / "hf-llama")
        for name in [args.only] if args.only else ["kolm", "transformers"]:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = serve(name, model_dir, export_dir, port, args)
            try:
                wait_ready(base, proc)
                model = "bench" if name == "kolm" else str(export_dir)
                run_phase(base, model, 1, min(3.0, args.duration), args.max_tokens, proc.pid)  # warm-up
                for c in args.clients:
                    r = run_phase(base, model, c, args.duration, args.max_tokens, proc.pid)
                    results.append({"server": name, **r})
                    print(f"{name} clients={c}: {r['tokens_per_s']:.1f} tok/s, errors {r['errors']}", file=sys.stderr)
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"\n{len(PROMPTS)} prompts, greedy, max_tokens {args.max_tokens}, {args.duration:.0f} s per phase, "
          f"{args.threads} threads per server, {args.dtype} weights\n")  # fmt: skip
    print(
        "| server | clients | tokens/s | TTFT p50 / p95 ms | ITL p50 / p95 ms | requests | errors | RSS start → end MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['server']} | {r['clients']} | {r['tokens_per_s']:.1f} | {r['ttft_p50_ms']:.0f} / {r['ttft_p95_ms']:.0f} "
            f"| {r['itl_p50_ms']:.1f} / {r['itl_p95_ms']:.1f} | {r['requests']} | {r['errors']} "
            f"| {r['rss_start_mb']:.0f} → {r['rss_end_mb']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
