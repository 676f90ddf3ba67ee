"""Int8 weight-only linear layers: batch-1 decoding on a CPU reads a quarter of the fp32 weight bytes.

At batch 1 a decode step multiplies one activation row by every weight
matrix, so its time is the time to read the weights from memory
(`benchmarks/bench_generate.py` prints that ceiling). Stored as int8 with
one scale per output row (symmetric: scale = max |w| / 127 over the row), a
matrix is read at one byte per weight instead of four, and PyTorch's
`_weight_int8pack_mm` CPU kernel multiplies bf16 activations by the int8
matrix directly, never materialising a dequantized copy.

Only the weights are rounded, each by at most half a step of its row's
scale; activations stay in floating point (bf16 inside the product, the
model's dtype outside it). torch.ao's dynamic int8 (`quant="int8"`) instead
quantizes the activations too, and its int8 GEMM is built for large batches.

    quantize_int8_weights(model)   # every nn.Linear, the output head included, in place

The output head is quantized as well: it is the largest matrix of a small
model (16,000 x 384 at the `small` shape, 40% of the weights). When it is
tied to the input embedding, the embedding keeps its floating-point values
(a lookup reads one row of it) and the head gets its own int8 copy.
Inference only: an `Int8Linear` has no trainable parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from kolm.errors import KolmError

__all__ = ["Int8Linear", "int8_matmul", "quantize_weight", "quantize_int8_weights", "int8_weights_available"]


def int8_weights_available() -> bool:
    """Whether this torch has the int8-weight x bf16-activation CPU kernel."""
    return hasattr(torch, "_weight_int8pack_mm")


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight (N, K), bf16 scale per row (N,)) with weight ~= qweight * scale[:, None]."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (N,); an all-zero row keeps a tiny, harmless scale
    # The bf16 scale is what the kernel multiplies by, so round against it, not against the fp32 one.
    scale = scale.to(torch.bfloat16)
    q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale


def int8_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x (..., K) @ (qweight * scales[:, None]).T -> (..., N), in x's dtype; the product runs in bf16."""
    shape = x.shape
    rows = x.reshape(-1, shape[-1]).to(torch.bfloat16).contiguous()  # (M, K)
    y = torch._weight_int8pack_mm(rows, qweight, scales)  # (M, N) bf16, accumulated in fp32 by the kernel
    return y.view(*shape[:-1], qweight.shape[0]).to(x.dtype)


class Int8Linear(nn.Module):
    """A bias-free linear layer with int8 weights and one bf16 scale per output feature (inference only)."""

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor):
        super().__init__()
        if qweight.dtype != torch.int8 or qweight.dim() != 2 or scales.shape != qweight.shape[:1]:
            raise KolmError("Int8Linear needs an int8 (out, in) weight and one scale per output row")
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", qweight)  # (N, K) int8
        self.register_buffer("scales", scales.to(torch.bfloat16))  # (N,)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        if linear.bias is not None:
            raise KolmError("int8 weight-only layers are bias-free; this linear layer has a bias")
        return cls(*quantize_weight(linear.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_matmul(x, self.qweight, self.scales)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def quantize_int8_weights(model: nn.Module) -> nn.Module:
    """Replace every bias-free `nn.Linear` of `model` by an `Int8Linear`, in place; returns the model.

    Layers with a bias (none in kolm's models) and everything that is not a
    plain `nn.Linear` (embeddings, norms, LoRA wrappers) are left as they
    are. The model must be on the CPU.
    """
    if not int8_weights_available():
        raise KolmError("this torch has no int8 weight-only kernel (torch._weight_int8pack_mm); use quant int8")
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear and child.bias is None:
                if child.weight.device.type != "cpu":
                    raise KolmError("int8 weight-only layers run on the CPU; load the model with device cpu")
                setattr(module, name, Int8Linear.from_linear(child).to(child.weight.device))
    return model
