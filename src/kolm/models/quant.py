"""Quantized loading, the `quant=` option of the one loader: int8 and bf16 on CPUs, NF4 and LLM.int8 on CUDA.

| quant | device | what happens |
| --- | --- | --- |
| int8 | CPU | linear layers' weights to int8, activations quantized per call (dynamic) |
| int8-wo | CPU | weight-only int8 (head included), bf16 activations in the product: fastest batch-1 decode |
| bf16 | CPU with native bf16, CUDA | weights stored and computed in bf16 |
| nf4 | CUDA | bitsandbytes 4-bit NormalFloat weights, bf16 compute (QLoRA's base) |
| llm-int8 | CUDA | bitsandbytes LLM.int8: int8 weights, outlier features in fp16 |

CPU int8 backend. `benchmarks/bench_quant.py --backends` times batch-1 decode
of the candidates side by side: torch.ao `quantize_dynamic` eagerly and under
`torch.compile`, and torchao's int8 configs (dynamic activation + weight,
weight-only) eagerly and compiled. torchao's int8 tensors do not support the
`torch.cat` that fuses our q/k/v and gate/up weights, so they only run with
the fusion bypassed, and they pay off only compiled: the compile takes
minutes on a small CPU, before the first token of a `kolm generate`. torch.ao
in eager mode is the one that is faster than fp32 from the first token, so it
is the backend, looked up by feature (`_ao_quantize_dynamic`) because that API
is deprecated and moves; when it is gone the option says so instead of
failing obscurely.

`int8-wo` (`kolm.models.int8_weights`) stores every linear weight as int8
with one scale per output row and keeps the activations in floating point;
its CPU kernel reads the int8 matrix directly, which is what a batch-1 decode
step is bound by (`benchmarks/bench_generate.py`, with the greedy agreement).

With `int8` the output head stays in full precision: it is usually tied to the
embedding, and quantizing it would untie and duplicate it.
"""

from __future__ import annotations

from typing import Any

from kolm.errors import KolmError

__all__ = [
    "QUANTS",
    "check_quant",
    "bnb_config",
    "quantize_int8",
    "apply_cpu_quant",
    "cpu_native_bf16",
    "int8_available",
]

QUANTS: dict[str, str] = {
    "int8": "CPU: dynamic int8 linear layers (torch.ao quantize_dynamic)",
    "int8-wo": "CPU: int8 weights only (output head too), activations in bf16/fp32: fastest batch-1 decode",
    "bf16": "bf16 weights: CPUs with AVX512-BF16/AMX, CUDA GPUs",
    "nf4": "CUDA: 4-bit NormalFloat weights with bitsandbytes, bf16 compute (QLoRA)",
    "llm-int8": "CUDA: bitsandbytes LLM.int8 weights",
}
_CUDA_ONLY = ("nf4", "llm-int8")


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _ao_quantize_dynamic() -> Any | None:
    """torch's dynamic quantization function wherever this torch keeps it, or None."""
    import torch

    for owner in ("torch.ao.quantization", "torch.quantization"):
        try:
            module = __import__(owner, fromlist=["quantize_dynamic"])
        except ImportError:
            continue
        fn = getattr(module, "quantize_dynamic", None)
        if fn is not None and any(e != "none" for e in torch.backends.quantized.supported_engines):
            return fn
    return None


def int8_available() -> bool:
    """Whether CPU int8 dynamic quantization is available in this torch."""
    return _ao_quantize_dynamic() is not None


def check_quant(quant: str | None, device: str) -> None:
    """Fail with one line naming the fix when `quant` cannot run on `device`."""
    if quant is None or quant == "none":
        return
    if quant not in QUANTS:
        raise KolmError(f"unknown quant {quant!r}; choose one of {', '.join(QUANTS)}")
    kind = str(device).split(":")[0]
    if quant in _CUDA_ONLY:
        if kind != "cuda":
            raise KolmError(
                f"quant {quant} loads weights with bitsandbytes, which needs a CUDA GPU (device is {device}); "
                "on a CPU use quant int8 (or bf16 where the CPU has native bf16)"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise KolmError(f"quant {quant} needs the bitsandbytes package: pip install bitsandbytes") from None
    elif quant == "int8":
        if kind != "cpu":
            raise KolmError(f"quant int8 is CPU dynamic quantization (device is {device}); on CUDA use llm-int8 or nf4")
        if not int8_available():
            raise KolmError(
                "this torch has no dynamic int8 quantization (torch.ao.quantization); use quant bf16 or none"
            )
    elif quant == "int8-wo":
        from kolm.models.int8_weights import int8_weights_available

        if kind != "cpu":
            raise KolmError(f"quant int8-wo runs on the CPU (device is {device}); on CUDA use llm-int8 or nf4")
        if not int8_weights_available():
            raise KolmError("this torch has no int8 weight-only kernel (torch._weight_int8pack_mm); use quant int8")
    elif quant == "bf16" and kind == "cpu" and not cpu_native_bf16():
        raise KolmError(
            "this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 would be emulated and slower; use quant int8"
        )


def bnb_config(quant: str, skip: list[str] | None = None) -> Any:
    """The transformers `BitsAndBytesConfig` of a CUDA quant ("nf4" or "llm-int8").

    `skip`: module names left in full precision (the output head, a classifier's score layer).
    """
    import torch
    from transformers import BitsAndBytesConfig

    skip = list(skip or ["lm_head", "score"])
    if quant == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,  # quantize the quantization constants too (QLoRA)
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=skip,
        )
    if quant == "llm-int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    raise KolmError(f"{quant!r} is not a bitsandbytes quant; choose nf4 or llm-int8")


def quantize_int8(model: Any) -> Any:
    """The model with every linear layer but the output head as dynamic int8 (CPU, inference only)."""
    import torch

    fn = _ao_quantize_dynamic()
    if fn is None:
        raise KolmError("this torch has no dynamic int8 quantization (torch.ao.quantization); use quant bf16 or none")
    head = {"lm_head", "score"}
    names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] not in head}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of torch.ao.quantization
        return fn(model, names, dtype=torch.qint8, inplace=False)


def apply_cpu_quant(model: Any, quant: str | None) -> Any:
    """`model` with a CPU quant applied after loading ("int8", "int8-wo"); other quants return it unchanged."""
    if quant == "int8":
        return quantize_int8(model)
    if quant == "int8-wo":
        from kolm.models.int8_weights import quantize_int8_weights

        return quantize_int8_weights(model)
    return model
