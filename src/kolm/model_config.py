"""Settings of the model architecture (the `model` section of a run).

Fields every architecture has sit at the top of the section; what belongs to
one architecture lives in a subsection named after it, so adding an
architecture adds a subsection and changes nothing else:

    model:
      arch: gpt            # which subsection applies
      d_model: 256
      n_layers: 6
      gpt:                 # may be left out: the defaults are filled in
        n_heads: 8
        n_kv_heads: 2

Only the subsection of `model.arch` may be set; setting another one is an
error naming it (a mistyped arch must not silently train a different model).
Cross-field checks of an architecture (`check`) see the shared fields too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kolm.errors import ConfigError
from kolm.sections import Section, option

__all__ = [
    "ModelConfig",
    "ArchSection",
    "GPTConfig",
    "Mamba2Config",
    "DeepseekConfig",
    "ARCH_SECTIONS",
    "ModelConfigError",
]


class ModelConfigError(ConfigError, ValueError):
    """A model shape that cannot work (e.g. in a config.json); a ValueError too, as `transformers` expects."""


# ----------------------------------------------------------------------------
# One subsection per architecture


class ArchSection(Section):
    """Base of an architecture's subsection: its own fields, plus checks against the shared ones."""

    def check(self, model: ModelConfig) -> list[str]:
        """Problems of these settings together with the shared ones, each naming its fields."""
        return []


@dataclass
class GPTConfig(ArchSection):
    """Llama-style decoder (`model.gpt`): grouped-query attention with rotary positions, SwiGLU MLP."""

    n_heads: int = option(4, help="attention heads", ge=1)
    n_kv_heads: int = option(2, help="key/value heads (grouped-query attention)", ge=1)
    ffn_dim: int = option(384, help="SwiGLU hidden size", ge=1)
    rope_theta: float = option(10000.0, help="rotary embedding base", gt=0)

    def check(self, model: ModelConfig) -> list[str]:
        problems = []
        if model.d_model % self.n_heads:
            problems.append(f"model.d_model ({model.d_model}) must be a multiple of model.gpt.n_heads ({self.n_heads})")
        elif (model.d_model // self.n_heads) % 2:
            problems.append(
                f"model.d_model / model.gpt.n_heads = {model.d_model // self.n_heads} must be even (rotary pairs)"
            )
        if self.n_heads % self.n_kv_heads:
            problems.append(
                f"model.gpt.n_heads ({self.n_heads}) must be a multiple of model.gpt.n_kv_heads ({self.n_kv_heads})"
            )
        return problems


@dataclass
class DeepseekConfig(ArchSection):
    """DeepSeek-V3-style decoder (`model.deepseek`): Multi-head Latent Attention and DeepSeekMoE feed-forward."""

    n_heads: int = option(4, help="attention heads", ge=1)
    q_lora_rank: int = option(0, help="rank of the query compression (0 = project queries directly)", ge=0)
    kv_lora_rank: int = option(64, help="size of the cached key/value latent per token", ge=1)
    qk_nope_head_dim: int = option(32, help="per-head query/key dims without rotary positions", ge=1)
    qk_rope_head_dim: int = option(16, help="per-head query/key dims with rotary positions (key shared by heads)", ge=2)
    v_head_dim: int = option(32, help="per-head value dims", ge=1)
    ffn_dim: int = option(384, help="SwiGLU hidden size of the first_k_dense dense layers", ge=1)
    moe_ffn_dim: int = option(96, help="SwiGLU hidden size of each expert", ge=1)
    n_routed_experts: int = option(8, help="routed experts per MoE layer", ge=2)
    n_shared_experts: int = option(1, help="shared experts (every token) per MoE layer", ge=1)
    top_k: int = option(2, help="routed experts per token", ge=1)
    first_k_dense: int = option(1, help="leading layers with a dense SwiGLU instead of MoE", ge=0)
    routed_scaling_factor: float = option(1.0, help="scale of the routed experts' gate weights", gt=0)
    bias_update_rate: float = option(1e-3, help="step of the load-balancing bias after each optimizer step", ge=0)
    aux_loss_alpha: float = option(0.0, help="weight of the sequence-level balance loss (0 = off)", ge=0)
    rope_theta: float = option(10000.0, help="rotary embedding base", gt=0)

    def check(self, model: ModelConfig) -> list[str]:
        problems = []
        if self.top_k > self.n_routed_experts:
            problems.append(
                f"model.deepseek.top_k ({self.top_k}) must not exceed "
                f"model.deepseek.n_routed_experts ({self.n_routed_experts})"
            )
        if self.qk_rope_head_dim % 2:
            problems.append(f"model.deepseek.qk_rope_head_dim ({self.qk_rope_head_dim}) must be even (rotary pairs)")
        if self.first_k_dense > model.n_layers:
            problems.append(
                f"model.deepseek.first_k_dense ({self.first_k_dense}) exceeds model.n_layers ({model.n_layers})"
            )
        return problems


@dataclass
class Mamba2Config(ArchSection):
    """Mamba-2 (`model.mamba2`): selective state-space mixer with the chunked SSD scan, no attention, no MLP."""

    d_state: int = option(32, help="state size N per head and channel", ge=1)
    head_dim: int = option(16, help="channels per head P (heads = expand * d_model / head_dim)", ge=1)
    expand: int = option(2, help="inner width as a multiple of d_model", ge=1)
    n_groups: int = option(1, help="groups of heads sharing one B and C", ge=1)
    conv_kernel: int = option(4, help="width of the causal depthwise convolution", ge=2)
    chunk_size: int = option(64, help="positions per chunk of the SSD scan", ge=1)

    def check(self, model: ModelConfig) -> list[str]:
        inner = self.expand * model.d_model
        if inner % self.head_dim:
            return [
                f"model.mamba2.expand * model.d_model ({inner}) must be a multiple of model.mamba2.head_dim ({self.head_dim})"
            ]
        if (inner // self.head_dim) % self.n_groups:
            return [f"the {inner // self.head_dim} heads must be a multiple of model.mamba2.n_groups ({self.n_groups})"]
        return []


@dataclass
class RWKV7Config(ArchSection):
    """RWKV-7 (`model.rwkv7`): time mixing with the generalised delta rule, token shift, squared-ReLU channel mixing."""

    head_size: int = option(32, help="channels per head (the state per head is head_size x head_size)", ge=2)
    ffn_dim: int = option(512, help="hidden size of channel mixing", ge=1)
    decay_rank: int = option(32, help="rank of the small MLP that makes the decay w", ge=1)
    a_rank: int = option(32, help="rank of the small MLP that makes the in-context learning rate a", ge=1)
    v_rank: int = option(16, help="rank of the small MLP that gates the value residual", ge=1)
    gate_rank: int = option(64, help="rank of the output gate", ge=1)
    chunk_size: int = option(16, help="tokens per chunk of the parallel form (at most 64: fp32 range)", ge=1, le=64)

    def check(self, model: ModelConfig) -> list[str]:
        if model.d_model % self.head_size:
            return [f"model.d_model ({model.d_model}) must be a multiple of model.rwkv7.head_size ({self.head_size})"]
        return []


# `model.arch` -> its subsection; the field of ModelConfig holding it has the same name.
ARCH_SECTIONS: dict[str, type[ArchSection]] = {
    "gpt": GPTConfig,
    "mamba2": Mamba2Config,
    "rwkv7": RWKV7Config,
    "deepseek": DeepseekConfig,
}


# ----------------------------------------------------------------------------
# The section


@dataclass
class ModelConfig(Section):
    """Shape of the model trained by `kolm pretrain`: shared fields plus the selected architecture's subsection."""

    sections: ClassVar[dict[str, type[ArchSection]]] = ARCH_SECTIONS

    arch: str = option(
        "gpt", help="architecture; its subsection (model.<arch>) holds its own settings", choices=list(ARCH_SECTIONS)
    )
    d_model: int = option(128, help="hidden size", ge=8)
    n_layers: int = option(4, help="number of blocks", ge=1)
    max_seq_len: int = option(256, help="maximum positions", ge=8)
    norm_eps: float = option(1e-5, help="RMSNorm epsilon", gt=0)
    tie_embeddings: bool = option(True, help="share input embedding and output projection")
    init_std: float = option(0.02, help="standard deviation of the weight init", gt=0)
    gpt: GPTConfig | None = option(None, help="settings of arch gpt (defaults filled in when model.arch is gpt)")
    mamba2: Mamba2Config | None = option(
        None, help="settings of arch mamba2 (defaults filled in when model.arch is mamba2)"
    )
    rwkv7: RWKV7Config | None = option(
        None, help="settings of arch rwkv7 (defaults filled in when model.arch is rwkv7)"
    )
    deepseek: DeepseekConfig | None = option(
        None, help="settings of arch deepseek (defaults filled in when model.arch is deepseek)"
    )

    def validate(self) -> None:
        problems = []
        for name, cls in self.sections.items():
            if name == self.arch:
                if getattr(self, name) is None:
                    setattr(self, name, cls())
            elif getattr(self, name) is not None:
                problems.append(
                    f"model.{name} is set but model.arch is {self.arch!r}; "
                    f"remove model.{name} (or set it to null), or set model.arch={name}"
                )
        if problems:
            raise ConfigError("; ".join(problems))
        problems = self.arch_settings.check(self)
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def arch_settings(self) -> ArchSection:
        """The subsection of the selected architecture (e.g. `self.gpt` when arch is gpt)."""
        return getattr(self, self.arch)
