"""Settings of the model architecture (the `model` section of a run)."""

from __future__ import annotations

from dataclasses import dataclass

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = ["ModelConfig"]


@dataclass
class ModelConfig(Section):
    """Shape of the decoder-only Transformer trained by `kolm pretrain`."""

    arch: str = option("gpt", help="architecture name", choices=["gpt"])
    d_model: int = option(128, help="hidden size", ge=8)
    n_layers: int = option(4, help="number of Transformer blocks", ge=1)
    n_heads: int = option(4, help="attention heads", ge=1)
    n_kv_heads: int = option(2, help="key/value heads (grouped-query attention)", ge=1)
    ffn_dim: int = option(384, help="SwiGLU hidden size", ge=1)
    max_seq_len: int = option(256, help="maximum positions", ge=8)
    rope_theta: float = option(10000.0, help="rotary embedding base", gt=0)
    norm_eps: float = option(1e-5, help="RMSNorm epsilon", gt=0)
    tie_embeddings: bool = option(True, help="share input embedding and output projection")
    init_std: float = option(0.02, help="standard deviation of the weight init", gt=0)

    def validate(self) -> None:
        problems = []
        if self.d_model % self.n_heads:
            problems.append(f"model.d_model ({self.d_model}) must be a multiple of model.n_heads ({self.n_heads})")
        elif (self.d_model // self.n_heads) % 2:
            problems.append(f"model.d_model / model.n_heads = {self.d_model // self.n_heads} must be even (rotary pairs)")
        if self.n_heads % self.n_kv_heads:
            problems.append(f"model.n_heads ({self.n_heads}) must be a multiple of model.n_kv_heads ({self.n_kv_heads})")
        if problems:
            raise ConfigError("; ".join(problems))
