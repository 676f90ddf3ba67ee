"""`onnx`: a KolmGPT causal LM as an ONNX decoder with a KV cache, for onnxruntime.

The graph has the input and output names optimum and onnxruntime-genai use
for decoder-only models, so their generation loops drive it unchanged:

    inputs   input_ids (B, T) int64, attention_mask (B, P+T) int64, position_ids (B, T) int64,
             past_key_values.{i}.key / .value (B, KV, P, D) float
    outputs  logits (B, T, V), present.{i}.key / .value (B, KV, P+T, D)

Batch, new-token and past lengths are dynamic axes. The first call passes a
past of length 0; each later call passes the previous call's presents.

The graph is traced from `OnnxDecoder`, which runs our own blocks with a
concatenating cache and computes in plain tensor ops what the model's
forward decides with Python branches on tensor values (the causal + padding
mask, rotary positions gathered from `position_ids`). The example inputs use
a past of 3 tokens, so no axis is specialised to 0 or 1.

`quant="int8"` adds onnxruntime's dynamic int8 quantization of the MatMul
weights (`quantize_dynamic`): weights stored as int8, activations quantized
per call. The file written is always `model.onnx` (+ `model.onnx.data`
when the weights are stored beside the graph), with the model's
config.json, generation_config.json and tokenizer files next to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kolm.errors import KolmError

__all__ = ["QUANTS", "OnnxDecoder", "export_onnx", "quantize_int8", "input_names", "output_names", "greedy"]

QUANTS = ("none", "int8")
OPSET = 18


def input_names(n_layers: int) -> list[str]:
    """Graph input names in order."""
    names = ["input_ids", "attention_mask", "position_ids"]
    for i in range(n_layers):
        names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
    return names


def output_names(n_layers: int) -> list[str]:
    """Graph output names in order."""
    names = ["logits"]
    for i in range(n_layers):
        names += [f"present.{i}.key", f"present.{i}.value"]
    return names


class _ConcatCache:
    """A cache that appends this call's keys and values to the given past and keeps the results as presents."""

    def __init__(self, past: list[tuple[torch.Tensor, torch.Tensor]]):
        self.past = past
        self.present: list[tuple[torch.Tensor, torch.Tensor]] = list(past)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.past[0][0].shape[2]

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        pk, pv = self.past[layer_idx]
        k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)  # (B, KV, P+T, D)
        self.present[layer_idx] = (k, v)
        return k, v


class OnnxDecoder(nn.Module):
    """The causal LM as a function of flat tensors: (ids, mask, positions, *past) -> (logits, *present)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        c = model.config
        cos, sin = model.model.rotary._build(torch.device("cpu"), torch.float32)  # (P_max, D) each
        self.register_buffer("cos", cos.to(model.lm_head.weight.dtype), persistent=False)
        self.register_buffer("sin", sin.to(model.lm_head.weight.dtype), persistent=False)
        self.n_layers = c.n_layers

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        base = self.model.model
        x = base.embed_tokens(input_ids)  # (B, T, C)
        T = input_ids.shape[1]
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(self.n_layers)]
        P = pairs[0][0].shape[2]
        cos = self.cos[position_ids].unsqueeze(2)  # (B, T, 1, D)
        sin = self.sin[position_ids].unsqueeze(2)
        # Causal + padding mask over past and new keys: (B, 1, T, P+T).
        q = torch.arange(T, device=x.device)[:, None] + P  # (T, 1) absolute query positions
        k = torch.arange(P + T, device=x.device)[None, :]  # (1, P+T)
        mask = attention_mask.bool()[:, None, None, :] & (k <= q)
        # A padding query sees no key at all; let it see itself so attention returns numbers, not NaN.
        mask = mask | ((k == q) & ~mask.any(-1, keepdim=True))
        cache = _ConcatCache(pairs)
        for layer in base.layers:
            x = layer(x, cos, sin, mask, cache)
        logits = self.model.lm_head(base.norm(x))  # (B, T, V)
        return (logits, *[t for pair in cache.present for t in pair])


def _example_inputs(config: Any, dtype: torch.dtype, past: int = 3, new: int = 2, batch: int = 2) -> tuple:
    """Inputs with past >= 2 and new >= 2 tokens so the exporter keeps every axis dynamic."""
    ids = torch.randint(0, config.vocab_size, (batch, new), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, past + new, dtype=torch.int64)
    pos = torch.arange(past, past + new, dtype=torch.int64).expand(batch, new).contiguous()
    kv = [torch.zeros(batch, config.n_kv_heads, past, config.head_dim, dtype=dtype) for _ in range(2 * config.n_layers)]
    return (ids, mask, pos, *kv)


def _export_graph(model: nn.Module, path: Path) -> None:
    """Trace `OnnxDecoder(model)` into `path` with dynamic batch, sequence and past axes."""
    c = model.config
    wrapper = OnnxDecoder(model).eval()
    args = _example_inputs(c, model.lm_head.weight.dtype)
    # Dim.DYNAMIC lets torch.export find the relations (mask length = past + new, one batch size).
    dyn = torch.export.Dim.DYNAMIC
    kv = tuple({0: dyn, 2: dyn} for _ in range(2 * c.n_layers))
    shapes = ({0: dyn, 1: dyn}, {0: dyn, 1: dyn}, {0: dyn, 1: dyn}, kv)
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            input_names=input_names(c.n_layers),
            output_names=output_names(c.n_layers),
            dynamic_shapes=shapes,
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """onnxruntime's dynamic int8 quantization of the MatMul weights of the graph `src`, written to `dst`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


def export_onnx(
    model_dir: str | Path, out_dir: str | Path, *, quant: str | None = None, dtype: str | None = None
) -> Path:
    """Write `model_dir` (KolmGPT + tokenizer) as `out_dir/model.onnx` with a KV cache; returns `out_dir`.

    `quant`: "none" (default) or "int8" (onnxruntime dynamic quantization).
    `dtype`: fp32 (default); the CPU execution provider runs fp32 fastest.
    """
    from kolm.export.hf_common import TOKENIZER_FILES
    from kolm.models.loading import load_model

    quant = (quant or "none").lower()
    if quant not in QUANTS:
        raise KolmError(f"ONNX quant {quant!r} is not written by kolm; choose one of {', '.join(QUANTS)}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model, _ = load_model(model_dir, device="cpu", dtype=dtype or "fp32")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    if quant == "int8":
        fp32 = out_dir / "model.fp32.onnx"
        _export_graph(model, fp32)
        quantize_int8(fp32, path)
        fp32.unlink()
    else:
        _export_graph(model, path)
    from transformers import LlamaConfig

    from kolm.export.hf_llama import llama_config

    LlamaConfig(**llama_config(model.config)).save_pretrained(out_dir)  # readable without kolm
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out_dir)
    for name in TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)
    return out_dir


def greedy(session: Any, prompt: list[int], max_new_tokens: int, eos_ids: tuple[int, ...] = ()) -> list[int]:
    """Greedy decoding of one prompt with an onnxruntime `InferenceSession` of an exported model.

    One prefill call with an empty past, then one call per new token feeding
    the presents back as the past: the loop optimum and onnxruntime-genai run.
    Returns the new token ids (stops after an id in `eos_ids`).
    """
    import numpy as np

    inputs = {i.name: i for i in session.get_inputs()}
    n_layers = sum(1 for name in inputs if name.endswith(".key"))
    kv = inputs["past_key_values.0.key"]
    kv_heads, head_dim = kv.shape[1], kv.shape[3]
    dtype = np.float16 if "float16" in kv.type else np.float32
    empty = np.zeros((1, kv_heads, 0, head_dim), dtype=dtype)
    past = {f"past_key_values.{i}.{part}": empty for i in range(n_layers) for part in ("key", "value")}
    ids = np.array([prompt], dtype=np.int64)  # (1, T)
    length, out = len(prompt), []
    positions = np.arange(length, dtype=np.int64)[None]
    for _ in range(max_new_tokens):
        feed = {"input_ids": ids, "attention_mask": np.ones((1, length), np.int64), "position_ids": positions, **past}
        logits, *present = session.run(None, feed)
        token = int(logits[0, -1].argmax())
        out.append(token)
        if token in eos_ids:
            break
        past = {name: value for name, value in zip(past, present)}
        ids, positions = np.array([[token]], dtype=np.int64), np.array([[length]], dtype=np.int64)
        length += 1
    return out
