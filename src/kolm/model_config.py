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

__all__ = ["ModelConfig", "ArchSection", "GPTConfig", "ARCH_SECTIONS", "ModelConfigError"]


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


# `model.arch` -> its subsection; the field of ModelConfig holding it has the same name.
ARCH_SECTIONS: dict[str, type[ArchSection]] = {"gpt": GPTConfig}


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
