"""Settings of the package stage (`kolm package`): which exports of the run's model to write and measure."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["ExportConfig"]

_FORMATS = ["hf-llama", "hf", "gguf", "onnx"]
_VARIANTS = ["fp32", "bf16", "int8", "int8-wo", "onnx", "onnx-int8", "gguf-f16", "gguf-q8_0", "gguf-q4_0"]


@dataclass
class ExportConfig(Section):
    """Exports of the run's model for the tools users already have, and the table of what each costs."""

    model: str | None = option(None, help="model dir to export; default: this run's pretrain/final")
    formats: list[str] = option(["hf-llama", "gguf"], help="formats written under export/<format>/ (내보내기 형식)")
    gguf_quant: str = option("q8_0", help="GGUF storage type", choices=["f32", "f16", "bf16", "q8_0", "q4_0"])
    onnx_quant: str = option("none", help="ONNX weights: none or int8 (onnxruntime dynamic)", choices=["none", "int8"])
    measure: list[str] = option(
        ["fp32", "int8", "gguf-q8_0", "gguf-q4_0"],
        help="forms compared side by side in export/quant/quant.md (size, memory, speed, quality); [] = none",
    )
    new_tokens: int = option(32, help="tokens decoded per speed measurement", ge=1)

    def validate(self) -> None:
        problems = [
            f"export.formats: unknown format {f!r}; choose from {', '.join(_FORMATS)}"
            for f in self.formats
            if f not in _FORMATS
        ]
        problems += [
            f"export.measure: unknown form {v!r}; choose from {', '.join(_VARIANTS)}"
            for v in self.measure
            if v not in _VARIANTS
        ]
        if problems:
            raise ConfigError("; ".join(problems))
