"""The architecture registry and the `model:` section: one subsection per arch, lookups, FLOPs, composition."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from kolm_testkit import make_model

from kolm.config import load_config
from kolm.errors import ConfigError, KolmError
from kolm.model_config import ArchSection, GPTConfig, ModelConfig
from kolm.sections import from_dict, option, to_dict


@dataclass
class ToyConfig(ArchSection):
    """A second architecture's subsection, to exercise the one-subsection rule."""

    width: int = option(8, help="width", ge=1)


@dataclass
class TwoArchModelConfig(ModelConfig):
    sections = {"gpt": GPTConfig, "toy": ToyConfig}

    arch: str = option("gpt", help="architecture", choices=["gpt", "toy"])
    toy: ToyConfig | None = option(None, help="settings of arch toy")


def test_selected_subsection_gets_its_defaults_and_the_others_stay_none():
    cfg = ModelConfig()
    assert cfg.arch == "gpt" and cfg.gpt == GPTConfig() and cfg.arch_settings is cfg.gpt
    toy = TwoArchModelConfig(arch="toy")
    assert toy.toy == ToyConfig() and toy.gpt is None
    assert to_dict(from_dict(ModelConfig, to_dict(cfg))) == to_dict(cfg)  # saved config.yaml loads back


def test_a_subsection_of_another_arch_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"model\.gpt is set but model\.arch is 'toy'") as err:
        from_dict(TwoArchModelConfig, {"arch": "toy", "gpt": {"n_heads": 2}})
    assert "1 problem(s)" in str(err.value)
    assert from_dict(TwoArchModelConfig, {"arch": "toy", "gpt": None, "toy": {"width": 3}}).toy.width == 3


def test_run_config_errors_name_the_nested_field():
    with pytest.raises(ConfigError, match=r"model\.gpt\.n_heads: 0 is out of range"):
        load_config("tiny", ["model.gpt.n_heads=0"])
    with pytest.raises(ConfigError, match=r"model\.gpt\.n_head: unknown key \(did you mean 'n_heads'\?\)"):
        load_config("tiny", ["model.gpt.n_head=2"])
    with pytest.raises(ConfigError, match=r"model\.d_model \(128\) must be a multiple of model\.gpt\.n_heads \(3\)"):
        load_config("tiny", ["model.gpt.n_heads=3"])
    with pytest.raises(
        ConfigError, match=r"model\.gpt\.n_heads \(4\) must be a multiple of model\.gpt\.n_kv_heads \(3\)"
    ):
        load_config("tiny", ["model.gpt.n_kv_heads=3"])
    with pytest.raises(ConfigError, match=r"model\.n_heads: unknown key.*gpt"):  # moved into model.gpt
        load_config("tiny", ["model.n_heads=4"])
    with pytest.raises(ConfigError, match=r"model\.arch: 'rnn' is not allowed; choose one of \['gpt', "):
        load_config("tiny", ["model.arch=rnn"])
    assert load_config("tiny", ["model.gpt.n_heads=8"]).model.gpt.n_heads == 8


def test_registry_lookups():
    from transformers import LlamaConfig

    from kolm.models.registry import ARCHS, arch_of, get_arch, lora_targets

    assert set(ARCHS) == set(ModelConfig.sections)  # every arch has its subsection and vice versa
    model = make_model()
    assert get_arch("gpt") is arch_of(model.config) and get_arch("gpt").model_type == "kolm_gpt"
    with pytest.raises(ConfigError, match="choose one of gpt"):
        get_arch("mamba")
    with pytest.raises(KolmError, match="'llama' is not a kolm model type"):
        arch_of(LlamaConfig())
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(lora_targets(model.config)) <= names


def test_every_exporter_is_a_known_format_and_imports():
    from kolm.export import FORMATS
    from kolm.models.registry import ARCHS

    for arch in ARCHS.values():
        for fmt in arch.exporters:
            assert fmt in FORMATS and callable(arch.exporter(fmt))


@pytest.mark.parametrize("tied", [True, False])
def test_flops_per_token_is_6n_plus_attention(tied):
    """6 x non-embedding parameters (as counted on the built model) + 6·L·T·d, and the output head's matmul when
    it is tied to the embedding (then not among the counted parameters, but still computed)."""
    from kolm.models.registry import flops_per_token
    from kolm.train.metrics import count_params

    model = make_model(tie_word_embeddings=tied)
    c = model.config
    n = count_params(model, exclude_embeddings=True)
    head = 6.0 * c.vocab_size * c.d_model if tied else 0.0
    assert flops_per_token(c, 128) == 6.0 * n + 6.0 * c.n_layers * 128 * c.d_model + head


def test_build_causal_lm_composes_blocks_with_llama_names():
    from kolm.models.blocks import Attention, Block, SwiGLU
    from kolm.models.registry import build_causal_lm, hf_config

    cfg = ModelConfig(d_model=32, n_layers=2, max_seq_len=64, gpt=GPTConfig(n_heads=4, n_kv_heads=2, ffn_dim=64))
    assert hf_config(cfg, 300, 1, 2, 0).to_dict()["n_kv_heads"] == 2
    model = build_causal_lm(cfg, 300, bos_id=1, eos_id=2, pad_id=0, device="cpu")
    block = model.model.layers[0]
    assert isinstance(block, Block) and isinstance(block.self_attn, Attention) and isinstance(block.mlp, SwiGLU)
    assert sorted(k for k in model.state_dict() if k.startswith("model.layers.0.")) == sorted(
        f"model.layers.0.{k}.weight"
        for k in (
            "input_layernorm",
            "post_attention_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    )


def test_kolm_gpt_config_errors_are_one_line_and_value_errors():
    from kolm.models.gpt import KolmGPTConfig

    with pytest.raises(ConfigError) as err:
        KolmGPTConfig(d_model=30, n_heads=4)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
