"""Prompt templates in YAML: few-shot classification prompts and prompt variations.

Templates live in `kolm/evaluate/templates/*.yaml` (or any YAML path). Two kinds:

- `kind: fewshot` — `instruction`, `example` (with `{text}` and `{label}`),
  `query` (with `{text}`), `separator`, `verbalizers` (label value → word, e.g.
  `"1": 긍정`), `content_free` (inputs for calibration, e.g. `N/A`).
- `kind: variations` — `variants: [{name, template}]`, each template holding
  `{prompt}`: the same question asked plainly, step by step, or to a persona.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kolm.errors import ConfigError

__all__ = [
    "FewShotTemplate",
    "Variation",
    "template_dir",
    "load_yaml_template",
    "load_fewshot_template",
    "load_variations",
]


def template_dir() -> Path:
    """Folder of the built-in templates."""
    return Path(__file__).resolve().parent / "templates"


def load_yaml_template(name_or_path: str) -> dict[str, Any]:
    """Read a built-in template by name (`sentiment`) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = template_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in template_dir().glob("*.yaml")))
        raise ConfigError(f"prompt template not found: {name_or_path} (built-in: {known}; or give a .yaml path)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"prompt template {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"prompt template {path} must be a mapping")
    data.setdefault("name", path.stem)
    return data


@dataclass
class FewShotTemplate:
    """How to write a k-shot classification prompt and which word stands for each label."""

    name: str
    query: str
    example: str
    verbalizers: dict[str, str]
    instruction: str = ""
    separator: str = "\n\n"
    content_free: list[str] = field(default_factory=lambda: ["N/A"])
    target_prefix: str = " "  # what joins the query and the label word (the example has "감정: 긍정")

    def target(self, label: Any) -> str:
        """The continuation whose likelihood stands for `label`."""
        return self.target_prefix + self.verbalizers[str(label)]

    @property
    def labels(self) -> list[str]:
        """Label values in template order (as strings, e.g. "0", "1")."""
        return list(self.verbalizers)

    def prompt(self, text: str, shots: list[tuple[str, Any]] = ()) -> str:
        """The context for `text` after the k demonstrations `shots` ((text, label) pairs)."""
        parts = [self.instruction] if self.instruction else []
        for shot_text, label in shots:
            parts.append(self.example.format(text=shot_text, label=self.verbalizers[str(label)]))
        parts.append(self.query.format(text=text))
        return self.separator.join(parts)


def load_fewshot_template(name_or_path: str) -> FewShotTemplate:
    """A `kind: fewshot` template."""
    data = load_yaml_template(name_or_path)
    missing = [k for k in ("query", "example", "verbalizers") if k not in data]
    if missing:
        raise ConfigError(f"few-shot template {name_or_path}: missing keys {missing}")
    if "{text}" not in data["query"] or "{label}" not in data["example"]:
        raise ConfigError(f"few-shot template {name_or_path}: query needs {{text}} and example needs {{label}}")
    verbalizers = {str(k): str(v) for k, v in data["verbalizers"].items()}
    if len(set(verbalizers.values())) != len(verbalizers):
        raise ConfigError(f"few-shot template {name_or_path}: two labels share a verbalizer word")
    cf = data.get("content_free", ["N/A"])
    return FewShotTemplate(
        name=str(data["name"]),
        query=data["query"],
        example=data["example"],
        verbalizers=verbalizers,
        instruction=data.get("instruction", "") or "",
        separator=data.get("separator", "\n\n"),
        content_free=[cf] if isinstance(cf, str) else list(cf),
        target_prefix=str(data.get("target_prefix", " ")),
    )


@dataclass
class Variation:
    """One way of asking: a name and a template with `{prompt}`."""

    name: str
    template: str

    def render(self, prompt: str) -> str:
        return self.template.format(prompt=prompt)


def load_variations(name_or_path: str = "variations", only: list[str] | None = None) -> list[Variation]:
    """The variants of a `kind: variations` template, optionally only those named in `only`."""
    data = load_yaml_template(name_or_path)
    out = [Variation(str(v["name"]), str(v["template"])) for v in data.get("variants", [])]
    for v in out:
        if "{prompt}" not in v.template:
            raise ConfigError(f"prompt variation {v.name!r} in {name_or_path} has no {{prompt}} placeholder")
    if only:
        names = [v.name for v in out]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ConfigError(f"eval.prompt_variants: unknown variants {unknown}; available: {names}")
        out = [v for v in out if v.name in only]
    return out
