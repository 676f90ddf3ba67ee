"""Environment check (`kolm doctor`): what this machine can run, before anything else does.

Reports Python, OS, CPU, memory, the torch build and accelerators, bf16
support and which optional packages are importable. `check()` returns plain
data; the CLI renders it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

__all__ = ["Report", "check", "REQUIRED", "OPTIONAL"]

# Needed by every stage; a missing one makes `kolm doctor` exit non-zero.
REQUIRED = ("torch", "transformers", "tokenizers", "datasets", "safetensors", "peft", "numpy", "pyarrow", "yaml")
# Unlock extra features; reported, never required.
OPTIONAL = (
    "bitsandbytes",
    "flash_attn",
    "mamba_ssm",
    "gradio",
    "onnxruntime",
    "kiwipiepy",
    "ray",
    "trl",
    "accelerate",
    "sacrebleu",
    "rouge_score",
    "datasketch",
    "sklearn",
)
_DIST_NAMES = {
    "yaml": "PyYAML",
    "flash_attn": "flash-attn",
    "mamba_ssm": "mamba-ssm",
    "sklearn": "scikit-learn",
    "rouge_score": "rouge-score",
}


@dataclass
class Report:
    """The result of an environment check."""

    python: str
    os: str
    machine: str
    cpu_cores: int | None
    ram_gb: float | None
    torch: dict[str, Any] = field(default_factory=dict)
    required: dict[str, str | None] = field(default_factory=dict)
    optional: dict[str, str | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def _version(module: str) -> str | None:
    """Installed version of a module's distribution, or None when it is not importable."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return metadata.version(_DIST_NAMES.get(module, module))
    except metadata.PackageNotFoundError:
        return "installed"


def _ram_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"installed": False}
    info: dict[str, Any] = {"installed": True, "version": torch.__version__, "threads": torch.get_num_threads()}
    if torch.version.cuda:
        info["build"] = f"CUDA {torch.version.cuda}"
    elif getattr(torch.version, "hip", None):
        info["build"] = f"ROCm {torch.version.hip}"
    else:
        info["build"] = "CPU"
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)})
        info["bf16"] = bool(torch.cuda.is_bf16_supported())
    else:
        # CPUs run bf16 autocast; whether it is fast depends on AVX512-BF16/AMX.
        info["bf16"] = True
    mps = getattr(torch.backends, "mps", None)
    info["mps"] = bool(mps is not None and mps.is_available())
    info["gpus"] = gpus
    info["device"] = "cuda" if gpus else ("mps" if info["mps"] else "cpu")
    return info


def check() -> Report:
    """Inspect this machine and the installed packages."""
    report = Report(
        python=platform.python_version(),
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        cpu_cores=os.cpu_count(),
        ram_gb=_ram_gb(),
    )
    for name in REQUIRED:
        report.required[name] = _version(name)
        if report.required[name] is None:
            report.problems.append(f"required package '{_DIST_NAMES.get(name, name)}' is missing: pip install -e .")
    for name in OPTIONAL:
        report.optional[name] = _version(name)
    report.torch = _torch_info() if report.required.get("torch") else {"installed": False}
    return report
