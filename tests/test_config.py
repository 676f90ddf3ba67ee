"""Config sections: validation at construction, YAML presets, overrides, saving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
import yaml

from kolm.config import RunConfig, apply_overrides, config_hash, list_presets, load_config, save_config
from kolm.errors import ConfigError
from kolm.sections import Section, from_dict, option, to_dict


@dataclass
class Inner(Section):
    size: int = option(4, help="size", ge=1)


@dataclass
class Outer(Section):
    name: str = option("x", help="name")
    mode: Literal["a", "b"] = option("a", help="mode")
    rate: float = option(0.1, help="rate", gt=0, le=1)
    kind: str = option("bpe", help="kind", choices=["bpe", "unigram"])
    tags: list[str] = option([], help="tags")
    inner: Inner = option(default_factory=Inner, help="inner")
    items: list[Inner] = option(default_factory=list, help="items")
    maybe: int | None = option(None, help="optional")


def test_defaults_and_nested_build():
    cfg = from_dict(Outer, {"inner": {"size": 8}, "items": [{"size": 2}, {}], "maybe": 3})
    assert cfg.inner.size == 8 and [i.size for i in cfg.items] == [2, 4] and cfg.maybe == 3
    assert to_dict(cfg)["items"] == [{"size": 2}, {"size": 4}]


def test_unknown_key_names_key_and_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"rat": 0.5})
    msg = str(err.value)
    assert "rat: unknown key" in msg and "did you mean 'rate'" in msg
    assert "valid keys: inner, items, kind, maybe, mode, name, rate, tags" in msg


def test_wrong_type_and_range_are_all_reported_together():
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"rate": "fast", "inner": {"size": 0}, "kind": "wordpiece", "mode": "c"})
    msg = str(err.value)
    assert "4 problem(s)" in msg
    assert "rate: expected a number, got 'fast'" in msg
    assert "inner.size: 0 is out of range; it must be >= 1" in msg
    assert "kind: 'wordpiece' is not allowed; choose one of ['bpe', 'unigram']" in msg
    assert "mode: 'c' is not allowed" in msg


def test_direct_construction_validates():
    with pytest.raises(ConfigError, match="rate: 2.0 is out of range"):
        Outer(rate=2.0)
    with pytest.raises(ConfigError, match="size: expected an integer"):
        Inner(size="big")  # type: ignore[arg-type]


def test_strings_from_cli_are_coerced():
    cfg = from_dict(Outer, {"rate": "0.5", "inner": {"size": "16"}, "tags": ["a"]})
    assert cfg.rate == 0.5 and cfg.inner.size == 16


def test_overrides_parse_yaml_scalars_and_nested_keys():
    data = apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=true", "x.y.z=[1, 2]", "s=hello 세계"])
    assert data == {"a": {"b": 2, "c": True}, "x": {"y": {"z": [1, 2]}}, "s": "hello 세계"}
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["novalue"])


def test_every_preset_loads_and_starts_with_its_command():
    presets = list_presets()
    assert {"tiny", "small", "base"} <= set(presets)
    from kolm.config import preset_dir

    for name in presets:
        cfg = load_config(name)
        assert isinstance(cfg, RunConfig)
        first = (preset_dir() / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# Run: kolm pipeline --config configs/") and name in first


def test_load_with_overrides_and_run_dir(tmp_path):
    cfg = load_config("tiny", ["pretrain.max_steps=7", "pretrain.warmup_steps=2", "seed=3"], run_dir=tmp_path / "r")
    assert cfg.pretrain.max_steps == 7 and cfg.seed == 3 and cfg.run_path == tmp_path / "r"


def test_bad_override_value_is_rejected():
    with pytest.raises(ConfigError, match="pretrain.max_steps: expected an integer"):
        load_config("tiny", ["pretrain.max_steps=lots"])
    with pytest.raises(ConfigError, match="device"):
        load_config("tiny", ["device=tpu"])


def test_yaml_base_inheritance_and_save_roundtrip(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: tiny\nname: child\npretrain:\n  max_steps: 5\n  warmup_steps: 1\n", encoding="utf-8")
    cfg = load_config(child)
    tiny = load_config("tiny")
    assert cfg.name == "child" and cfg.pretrain.max_steps == 5
    assert cfg.model.d_model == tiny.model.d_model
    saved = save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(saved)
    assert to_dict(again) == to_dict(cfg)
    assert config_hash(again.model) == config_hash(cfg.model)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes("name: \xc7\xd1\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text(yaml.safe_dump([1, 2]), encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(listy)


def test_pipeline_stage_names_are_checked():
    with pytest.raises(ConfigError, match="unknown stage"):
        load_config("tiny", ["pipeline.stages=[data, nope]"])


def test_switching_arch_on_the_command_line_leaves_the_presets_gpt_section_behind():
    cfg = load_config("tiny", ["model.arch=mamba2", "model.mamba2.d_state=8"])
    assert cfg.model.arch == "mamba2" and cfg.model.gpt is None and cfg.model.mamba2.d_state == 8
    assert load_config("tiny", ["model.arch=gpt"]).model.gpt.n_heads == load_config("tiny").model.gpt.n_heads
    # a subsection the user names still has to match the architecture
    with pytest.raises(ConfigError, match="model.gpt is set but model.arch is 'rwkv7'"):
        load_config("tiny", ["model.arch=rwkv7", "model.gpt.n_heads=2"])
