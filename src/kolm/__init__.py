"""kolm: a Korean-first toolkit from raw text to a served, aligned chat model.

Importing `kolm` does nothing but define names: no logging setup, no device
probing, no torch import. Stages import what they need when they run. To use
kolm models through `transformers.Auto*` classes, import `kolm.models` (it
registers the architectures).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_config", "run_stage", "run_pipeline", "load_model"]


def __getattr__(name: str):
    # The public API is resolved lazily so that `import kolm` stays light.
    if name == "load_config":
        from kolm.config import load_config

        return load_config
    if name == "run_stage":
        from kolm.run import run_stage

        return run_stage
    if name == "load_model":
        from kolm.models.loading import load_model

        return load_model
    if name == "run_pipeline":
        from kolm.pipeline import run_pipeline

        return run_pipeline
    raise AttributeError(f"module 'kolm' has no attribute {name!r}")
