"""Fixtures of the export tests: the model test kit of tests/models."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from kolm_testkit import model_dir, tokenizer  # noqa: E402,F401  (fixtures)
