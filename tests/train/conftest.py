"""Fixtures for the pretraining tests: a tiny tokenizer, a tiny curated-data folder, a tiny run config."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import make_data, make_tokenizer, tiny_overrides


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> Path:
    """A run-dir template holding data/ and tokenizer/ (copy it per test)."""
    root = tmp_path_factory.mktemp("tiny_template")
    make_data(root / "data")
    make_tokenizer(root / "tokenizer")
    return root


@pytest.fixture
def tiny_run(tiny_artifacts, tmp_path):
    """Factory: a RunConfig over a fresh copy of the tiny artifacts, with overrides."""
    import shutil

    from kolm.config import load_config

    def make(run_dir: Path | None = None, **extra):
        run_dir = run_dir or tmp_path / "run"
        if not (run_dir / "data").exists():
            shutil.copytree(tiny_artifacts, run_dir, dirs_exist_ok=True)
        return load_config("tiny", tiny_overrides(**extra), run_dir=run_dir)

    return make
