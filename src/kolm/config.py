"""The run configuration: one typed section per stage, YAML presets, CLI overrides.

`load_config("tiny", ["pretrain.max_steps=50"])` reads `configs/tiny.yaml`,
applies the overrides and returns a validated `RunConfig`. Stage sections live
beside their stage (`kolm/data/config.py`, ...) and are composed here. Nothing
here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kolm.align.config import AlignConfig
from kolm.data.config import DataConfig
from kolm.errors import ConfigError
from kolm.evaluate.config import EvalConfig
from kolm.export.config import ExportConfig
from kolm.finetune.config import FinetuneConfig
from kolm.model_config import ModelConfig
from kolm.pipeline_config import PipelineConfig
from kolm.sections import Section, from_dict, option, to_dict
from kolm.tokenizer.config import TokenizerConfig
from kolm.train.config import PretrainConfig

__all__ = [
    "RunConfig",
    "load_config",
    "from_dict",
    "to_dict",
    "apply_overrides",
    "save_config",
    "config_hash",
    "preset_dir",
    "list_presets",
]


# ----------------------------------------------------------------------------
# Overrides: key.sub=value


def _parse_scalar(text: str) -> Any:
    """Parse an override value with YAML rules (numbers, bools, lists, null)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings to a nested mapping (in place, returned)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value (예: pretrain.max_steps=100)")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        node = data
        for part in parts[:-1]:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            nxt = node.get(part) if isinstance(node, dict) else None
            if not isinstance(nxt, (dict, list)):
                nxt = {}
                node[part] = nxt
            node = nxt
        last = parts[-1]
        value = _parse_scalar(raw)
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------
# The run config


@dataclass
class RunConfig(Section):
    """The whole run: general settings plus one section per stage."""

    name: str = option("run", help="run name; the run directory is runs/<name> unless run_dir is set")
    run_dir: str | None = option(None, help="run directory (default: runs/<name>)")
    seed: int = option(1234, help="random seed for python, numpy and torch", ge=0)
    device: str = option("auto", help="device: auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    data: DataConfig = option(default_factory=DataConfig, help="data curation (데이터 정제)")
    tokenizer: TokenizerConfig = option(default_factory=TokenizerConfig, help="tokenizer (토크나이저)")
    model: ModelConfig = option(default_factory=ModelConfig, help="model architecture (모델 구조)")
    pretrain: PretrainConfig = option(default_factory=PretrainConfig, help="pretraining (사전학습)")
    finetune: FinetuneConfig = option(default_factory=FinetuneConfig, help="fine-tuning (미세조정)")
    align: AlignConfig = option(default_factory=AlignConfig, help="alignment (정렬): reward model, DPO, PPO, GRPO")
    eval: EvalConfig = option(default_factory=EvalConfig, help="evaluation (평가)")
    export: ExportConfig = option(default_factory=ExportConfig, help="export and quantization (내보내기·양자화)")
    pipeline: PipelineConfig = option(default_factory=PipelineConfig, help="which stages the pipeline runs")

    def validate(self) -> None:
        dev = self.device
        if not (dev in {"auto", "cpu", "cuda", "mps"} or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"device: {dev!r} is not allowed; choose auto, cpu, cuda, cuda:N or mps")

    @property
    def run_path(self) -> Path:
        """The run directory."""
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


# ----------------------------------------------------------------------------
# Presets, loading and saving


def preset_dir() -> Path:
    """Folder of the YAML presets, shipped inside the package (`configs/` in a checkout links to it)."""
    return Path(__file__).resolve().parent / "presets"


def list_presets() -> list[str]:
    """Names of the presets found in `preset_dir()` (one source of truth: the folder)."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        presets = ", ".join(list_presets())
        raise ConfigError(f"config file not found: {path} (presets: {presets})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def resolve_config_path(config: str | Path | None) -> Path | None:
    """A path, or a preset name such as `tiny`."""
    if config is None:
        return None
    path = Path(config)
    if path.exists() or path.suffix in {".yaml", ".yml"} or "/" in str(config):
        return path
    return preset_dir() / f"{config}.yaml"


def load_config(
    config: str | Path | None = None,
    overrides: typing.Iterable[str] = (),
    run_dir: str | Path | None = None,
) -> Any:
    """Load a preset or YAML file, apply `key=value` overrides, validate, return a RunConfig.

    A YAML file may name a parent with `base: <preset or path>`; its settings are
    merged under the file's own.
    """
    data: dict[str, Any] = {}
    path = resolve_config_path(config)
    overrides = list(overrides)
    if path is not None:
        data = _read_with_base(path, seen=set())
        _switch_arch(data, overrides)
    data = apply_overrides(data, overrides)
    if run_dir is not None:
        data["run_dir"] = str(run_dir)
    return from_dict(RunConfig, data)


def _switch_arch(data: dict[str, Any], overrides: list[str]) -> None:
    """`model.arch=X` over a file written for another architecture drops the file's settings of that other one.

    `kolm pretrain --config tiny model.arch=mamba2` then means "the tiny preset's run, as Mamba-2": the preset's
    `model.gpt` section stays behind, while a subsection the user names in an override still counts (and a
    wrong one is still an error).
    """
    from kolm.model_config import ARCH_SECTIONS

    arch = None
    for item in overrides:
        key, _, raw = item.partition("=")
        if key.strip() == "model.arch":
            arch = str(_parse_scalar(raw))
    model = data.get("model")
    if arch is None or not isinstance(model, dict) or arch == model.get("arch", "gpt"):
        return
    for name in ARCH_SECTIONS:
        if name != arch:
            model.pop(name, None)


def _read_with_base(path: Path, seen: set[Path]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} includes itself through 'base'")
    seen.add(path)
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base:
        parent = resolve_config_path(base)
        if parent is not None and not parent.is_absolute():
            parent = (path.parent / parent) if (path.parent / parent).exists() else parent
        data = _merge(_read_with_base(parent, seen), data)
    return data


def save_config(cfg: RunConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(to_dict(cfg), allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def config_hash(*parts: Any) -> str:
    """Stable short hash of config values (dataclasses, dicts, scalars)."""
    blob = json.dumps([to_dict(p) for p in parts], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
