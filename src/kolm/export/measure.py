"""The quantization table: each form of one model measured side by side, in one process, on one machine.

Variants: fp32, bf16, int8 (torch.ao dynamic) and int8-wo (int8 weights only)
in PyTorch (through the one loader and the one generation entry point), ONNX fp32 and int8 in onnxruntime, GGUF Q8_0/Q4_0/
F16 (llama.cpp when `llama_cpp` is importable, else its quality read back
through transformers, whose dequantized weights are the file's). Per variant:

* size: bytes of the weights in that form (files on disk; serialized state
  for PyTorch forms);
* resident memory: growth of this process's RSS while loading and running it
  (approximate: earlier variants' freed memory may be reused);
* time to first token (prefill of the prompt) and batch-1 decode tokens/s;
* bits per character and perplexity on held-out text (token NLL summed over
  documents; bits per character is comparable across tokenizers).

Next to the measured speed stands the ceiling of this machine: batch-1 decode
reads every weight once per token, so tokens/s <= memory bandwidth / bytes of
weights. The bandwidth is measured here (`read_bandwidth`).
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Measurement", "VARIANTS", "default_variants", "measure_variants", "read_bandwidth", "write_table"]

VARIANTS = ("fp32", "bf16", "int8", "int8-wo", "onnx", "onnx-int8", "gguf-f16", "gguf-q8_0", "gguf-q4_0")
SAMPLE_TEXTS = [
    "오늘은 날씨가 맑고 바람이 시원해서 산책하기 좋은 날이었다.",
    "이 영화는 배우들의 연기가 훌륭했지만 이야기의 전개가 조금 느렸다.",
    "서울의 지하철은 출퇴근 시간에 매우 붐비지만 노선이 잘 짜여 있다.",
    "한국어 언어 모델을 처음부터 학습하면 토크나이저의 선택이 중요하다.",
]
PROMPT = "한국어 문장을 이어서 써 봅시다. 오늘은"


@dataclass
class Measurement:
    """One row of the table."""

    variant: str
    engine: str
    size_mb: float
    rss_mb: float | None = None
    ttft_ms: float | None = None
    decode_tok_s: float | None = None
    ceiling_tok_s: float | None = None
    bpc: float | None = None
    perplexity: float | None = None
    note: str = ""


def _rss_mb() -> float:
    import os

    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def read_bandwidth(mb: int = 256) -> float:
    """Memory read bandwidth of this machine in GB/s (best of 3 sums over an `mb` MiB fp32 tensor)."""
    import torch

    x = torch.ones(mb * 2**20 // 4)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        float(x.sum())
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


def default_variants() -> list[str]:
    """The variants this environment can measure (optional packages present, CPU features)."""
    import importlib.util

    from kolm.models.int8_weights import int8_weights_available
    from kolm.models.quant import cpu_native_bf16, int8_available

    out = ["fp32"]
    if cpu_native_bf16():
        out.append("bf16")
    if int8_available():
        out.append("int8")
    if int8_weights_available():
        out.append("int8-wo")
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        out += ["onnx", "onnx-int8"]
    if importlib.util.find_spec("gguf"):
        out += ["gguf-q8_0", "gguf-q4_0"]
    return out


def _bpc(total_nll: float, tokens: int, chars: int) -> tuple[float, float]:
    return total_nll / math.log(2) / max(1, chars), math.exp(total_nll / max(1, tokens))


def _encode(tokenizer: Any, texts: list[str], limit: int) -> list[list[int]]:
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return [(bos + tokenizer(t, add_special_tokens=False)["input_ids"])[:limit] for t in texts]


def _torch_row(model_dir: Path, variant: str, texts: list[str], new_tokens: int) -> Measurement:
    import torch
    import torch.nn.functional as F

    from kolm.infer.generate import SamplingParams, generate
    from kolm.models.loading import load_model

    rss0 = _rss_mb()
    model, tokenizer = load_model(model_dir, quant=None if variant == "fp32" else variant)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    nll, tokens = 0.0, 0
    docs = _encode(tokenizer, texts, model.config.max_seq_len)
    with torch.inference_mode():
        for ids in docs:
            x = torch.tensor([ids])
            logits = model(x).logits[0, :-1].float()  # (T-1, V)
            nll += float(F.cross_entropy(logits, x[0, 1:], reduction="sum"))
            tokens += len(ids) - 1
    prompt = _encode(tokenizer, [PROMPT], model.config.max_seq_len - new_tokens)[0]
    params = lambda n: SamplingParams(max_new_tokens=n, temperature=0, eos_token_ids=[])  # noqa: E731
    generate(model, tokenizer, [prompt], params(2))  # warm-up
    t = time.perf_counter()
    generate(model, tokenizer, [prompt], params(1))
    first = time.perf_counter() - t
    t = time.perf_counter()
    generate(model, tokenizer, [prompt], params(new_tokens))
    total = time.perf_counter() - t
    bpc, ppl = _bpc(nll, tokens, sum(len(s) for s in texts))
    return Measurement(
        variant=variant,
        engine="PyTorch (kolm engine)",
        size_mb=buf.tell() / 2**20,
        rss_mb=_rss_mb() - rss0,
        ttft_ms=first * 1e3,
        decode_tok_s=(new_tokens - 1) / max(total - first, 1e-9),
        bpc=bpc,
        perplexity=ppl,
    )


def _onnx_row(
    onnx_file: Path, variant: str, tokenizer: Any, texts: list[str], new_tokens: int, max_len: int
) -> Measurement:
    import numpy as np
    import onnxruntime as ort

    from kolm.export.onnx import greedy

    rss0 = _rss_mb()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    kv = session.get_inputs()[3]
    n_layers = sum(1 for i in session.get_inputs() if i.name.endswith(".key"))
    nll, tokens = 0.0, 0
    for ids in _encode(tokenizer, texts, max_len):
        empty = np.zeros((1, kv.shape[1], 0, kv.shape[3]), np.float32)
        feed = {
            "input_ids": np.array([ids], np.int64),
            "attention_mask": np.ones((1, len(ids)), np.int64),
            "position_ids": np.arange(len(ids), dtype=np.int64)[None],
            **{f"past_key_values.{i}.{p}": empty for i in range(n_layers) for p in ("key", "value")},
        }
        logits = session.run(["logits"], feed)[0][0, :-1].astype(np.float64)  # (T-1, V)
        logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        nll += float((logz - logits[np.arange(len(ids) - 1), ids[1:]]).sum())
        tokens += len(ids) - 1
    prompt = _encode(tokenizer, [PROMPT], max_len - new_tokens)[0]
    greedy(session, prompt, 2)
    t = time.perf_counter()
    greedy(session, prompt, 1)
    first = time.perf_counter() - t
    t = time.perf_counter()
    greedy(session, prompt, new_tokens)
    total = time.perf_counter() - t
    bpc, ppl = _bpc(nll, tokens, sum(len(s) for s in texts))
    size = sum(p.stat().st_size for p in onnx_file.parent.glob(onnx_file.name + "*"))
    return Measurement(
        variant=variant,
        engine="onnxruntime (CPU)",
        size_mb=size / 2**20,
        rss_mb=_rss_mb() - rss0,
        ttft_ms=first * 1e3,
        decode_tok_s=(new_tokens - 1) / max(total - first, 1e-9),
        bpc=bpc,
        perplexity=ppl,
    )


def _gguf_row(
    gguf_file: Path, variant: str, tokenizer: Any, texts: list[str], new_tokens: int, max_len: int
) -> Measurement:
    import importlib.util

    import torch
    import torch.nn.functional as F

    size = gguf_file.stat().st_size / 2**20
    docs = _encode(tokenizer, texts, max_len)
    chars = sum(len(s) for s in texts)
    if importlib.util.find_spec("llama_cpp"):
        import numpy as np
        from llama_cpp import Llama

        rss0 = _rss_mb()
        llm = Llama(str(gguf_file), n_ctx=max_len, logits_all=True, verbose=False, n_threads=torch.get_num_threads())
        nll, tokens = 0.0, 0
        for ids in docs:
            llm.reset()
            llm.eval(ids)
            logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
            logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
            nll += float((logz - logits[np.arange(len(ids) - 1), ids[1:]]).sum())
            tokens += len(ids) - 1
        prompt = _encode(tokenizer, [PROMPT], max_len - new_tokens)[0]

        def run(n: int) -> float:
            llm.reset()
            t = time.perf_counter()
            for i, _ in enumerate(llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)):
                if i + 1 == n:
                    break
            return time.perf_counter() - t

        run(2)
        first, total = run(1), run(new_tokens)
        bpc, ppl = _bpc(nll, tokens, chars)
        return Measurement(
            variant=variant,
            engine="llama.cpp",
            size_mb=size,
            rss_mb=_rss_mb() - rss0,
            ttft_ms=first * 1e3,
            decode_tok_s=(new_tokens - 1) / max(total - first, 1e-9),
            bpc=bpc,
            perplexity=ppl,
        )
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the GGUF loader's per-tensor bar would interleave with kolm's progress
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name).eval()
    nll, tokens = 0.0, 0
    with torch.inference_mode():
        for ids in docs:
            x = torch.tensor([ids])
            nll += float(F.cross_entropy(model(x).logits[0, :-1].float(), x[0, 1:], reduction="sum"))
            tokens += len(ids) - 1
    bpc, ppl = _bpc(nll, tokens, chars)
    return Measurement(
        variant=variant,
        engine="transformers (dequantized)",
        size_mb=size,
        bpc=bpc,
        perplexity=ppl,
        note="quality only: llama.cpp not installed (pip install llama-cpp-python) for its speed",
    )


def measure_variants(
    model_dir: str | Path,
    variants: list[str],
    *,
    texts: list[str] | None = None,
    new_tokens: int = 32,
    work_dir: str | Path | None = None,
    bandwidth_gbs: float | None = None,
) -> list[Measurement]:
    """Measure each variant of the kolm model in `model_dir`; exports go to `work_dir` (a temp dir if None)."""
    import tempfile

    from kolm.errors import KolmError
    from kolm.models.loading import find_model_dir, load_tokenizer

    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise KolmError(f"unknown quant variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    model_dir = find_model_dir(model_dir)
    texts = texts or SAMPLE_TEXTS
    tokenizer = load_tokenizer(model_dir)
    from transformers import AutoConfig

    max_len = int(AutoConfig.from_pretrained(model_dir).max_position_embeddings)
    bandwidth = bandwidth_gbs or read_bandwidth()
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="kolm-quant-") as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        for variant in variants:
            if variant in ("fp32", "bf16", "int8", "int8-wo"):
                row = _torch_row(model_dir, variant, texts, new_tokens)
            elif variant.startswith("onnx"):
                from kolm.export import export_model
                from kolm.export.onnx import quantize_int8

                fp32 = work / "onnx" / "model.onnx"
                if not fp32.exists():
                    export_model(model_dir, "onnx", fp32.parent, force=True, card=False)
                target = fp32
                if variant == "onnx-int8":
                    target = work / "onnx-int8" / "model.onnx"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    quantize_int8(fp32, target)
                row = _onnx_row(target, variant, tokenizer, texts, new_tokens, max_len)
            else:
                from kolm.export.gguf import export_gguf, gguf_file_name

                quant = variant.split("-", 1)[1]
                export_gguf(model_dir, work / variant, quant=quant)
                row = _gguf_row(work / variant / gguf_file_name(quant), variant, tokenizer, texts, new_tokens, max_len)
            row.ceiling_tok_s = bandwidth * 1e9 / (row.size_mb * 2**20)
            rows.append(row)
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def markdown(rows: list[Measurement], bandwidth_gbs: float | None = None) -> str:
    """The table as Markdown, with the bandwidth ceiling and where a form is not faster than fp32."""
    lines = [
        "# 양자화 비교 · Quantization",
        "",
        "| variant | engine | size MB | RSS MB | TTFT ms | decode tok/s | ceiling tok/s | bits/char | perplexity |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.variant} | {r.engine} | {_fmt(r.size_mb, 2)} | {_fmt(r.rss_mb)} | {_fmt(r.ttft_ms)} | "
            f"{_fmt(r.decode_tok_s)} | {_fmt(r.ceiling_tok_s, 0)} | {_fmt(r.bpc, 4)} | {_fmt(r.perplexity, 2)} |"
        )
    base = next((r for r in rows if r.variant == "fp32" and r.decode_tok_s), None)
    slower = [
        r.variant
        for r in rows
        if base and r.decode_tok_s and r.variant != "fp32" and r.decode_tok_s < base.decode_tok_s
    ]
    lines.append("")
    if bandwidth_gbs:
        lines.append(
            f"Ceiling: batch-1 decode reads every weight once per token, so tokens/s <= memory bandwidth "
            f"({bandwidth_gbs:.1f} GB/s measured here) / weight bytes."
        )
    if slower:
        lines.append(f"Not faster than fp32 here: {', '.join(slower)}.")
    lines += [f"- {r.variant}: {r.note}" for r in rows if r.note]
    return "\n".join(lines) + "\n"


def write_table(rows: list[Measurement], out_dir: str | Path, bandwidth_gbs: float | None = None) -> Path:
    """Write quant.json and quant.md into `out_dir`; returns the Markdown path."""
    from kolm.files import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "quant.json", {"bandwidth_gbs": bandwidth_gbs, "rows": [asdict(r) for r in rows]})
    path = out_dir / "quant.md"
    path.write_text(markdown(rows, bandwidth_gbs), encoding="utf-8")
    return path
