"""Fixtures of the model tests (defined in kolm_testkit.py, shared with tests/infer)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kolm_testkit import model_dir, tokenizer  # noqa: E402,F401  (fixtures)
