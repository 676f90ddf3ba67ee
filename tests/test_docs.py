"""The docs keep up with the code: every module is listed in docs/files.md, every stage in the README."""

from __future__ import annotations

from pathlib import Path

from kolm.stages import STAGES

REPO = Path(__file__).resolve().parents[1]


def test_every_module_is_listed_with_a_docstring():
    listing = (REPO / "docs" / "files.md").read_text(encoding="utf-8")
    for path in sorted((REPO / "src" / "kolm").rglob("*.py")):
        rel = path.relative_to(REPO / "src").as_posix()
        assert rel in listing, f"{rel} is missing from docs/files.md"
        assert path.read_text(encoding="utf-8").lstrip().startswith(('"""', "'''")), f"{rel} has no module docstring"


def test_readme_names_the_two_commands_and_every_stage():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    for stage in STAGES:
        assert f"kolm {stage.name}" in readme
