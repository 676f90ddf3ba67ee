"""Dependencies point one way: cli -> stages -> models/data -> primitives.

Read from the source with `ast`, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "kolm"
LOWER = ("finetune", "align", "evaluate", "train", "data", "infer", "models", "tokenizer", "metrics", "export")
STAGE_MODULES = {
    "kolm.data.curate",
    "kolm.tokenizer.stage",
    "kolm.train.stage",
    "kolm.finetune.stage",
    "kolm.finetune.compare",
    "kolm.align.stage",
    "kolm.align.compare",
    "kolm.export.stage",
    "kolm.evaluate.stage",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("kolm")}


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py")) if (SRC / package).is_dir() else []


def test_lower_packages_never_import_the_run_machinery_or_the_cli():
    for package in LOWER:
        for path in _modules(package):
            bad = {
                n for n in _imports(path) if n == "kolm.run" or n.startswith(("kolm.run.", "kolm.cli", "kolm.pipeline"))
            }
            assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_no_module_imports_another_stages_stage_module():
    for package in LOWER:
        for path in _modules(package):
            own = f"kolm.{package}."
            bad = {
                n
                for n in _imports(path)
                for s in STAGE_MODULES
                if (n == s or n.startswith(s + ".")) and not s.startswith(own)
            }
            assert not bad, f"{path.relative_to(SRC)} imports another stage's module {sorted(bad)}"


def test_finetune_and_evaluate_do_not_import_each_other():
    for a, b in (("finetune", "evaluate"), ("evaluate", "finetune")):
        for path in _modules(a):
            bad = {n for n in _imports(path) if n.startswith(f"kolm.{b}")}
            assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_models_import_nothing_from_the_stages():
    for path in _modules("models"):
        bad = {n for n in _imports(path) if n.startswith(tuple(f"kolm.{p}" for p in LOWER if p != "models"))}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
