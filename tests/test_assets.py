"""The embedded corpus: present, well-formed, NFC, balanced, within the promised sizes."""

from __future__ import annotations

import bz2
import gzip
import json
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[1] / "src" / "kolm" / "assets"


def _text(path: Path) -> str:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif path.name.endswith(".bz2"):
        raw = bz2.decompress(raw)
    return raw.decode("utf-8")


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in _text(ASSETS / name).splitlines() if line.strip()]


def test_pretraining_documents_cover_genres_and_size():
    files = sorted((ASSETS / "corpus").glob("*.jsonl*"))
    docs = [d for f in files for d in _jsonl(f"corpus/{f.name}")]
    assert sum(len(d["text"]) for d in docs) >= 300_000  # characters
    genres = Counter(d["genre"] for d in docs)
    assert {"encyclopedia", "news", "essay", "dialogue", "review", "howto"} <= set(genres)
    assert len({d["text"] for d in docs}) == len(docs)  # no repeated documents


def test_labelled_reviews_are_balanced_and_split():
    train, test = _jsonl("reviews_train.jsonl"), _jsonl("reviews_test.jsonl")
    assert len(train) + len(test) >= 500
    for split in (train, test):
        counts = Counter(r["label"] for r in split)
        assert set(counts) == {0, 1} and abs(counts[0] - counts[1]) <= len(split) * 0.05
    assert not {r["text"] for r in train} & {r["text"] for r in test}


def test_instructions_preferences_and_eval_prompts():
    inst = _jsonl("instructions.jsonl.bz2")
    assert len(inst) >= 150 and all(r["instruction"] and r["output"] for r in inst)
    prefs = _jsonl("preferences.jsonl.bz2")
    assert len(prefs) >= 100 and all(r["chosen"] != r["rejected"] for r in prefs)
    prompts = _jsonl("eval_prompts.jsonl")
    assert len(prompts) >= 40 and all(r["prompt"] for r in prompts)


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(ASSETS).as_posix() for p in ASSETS.rglob("*") if ".jsonl" in p.name)
)
def test_every_file_is_nfc_text(path):
    text = _text(ASSETS / path)
    assert unicodedata.is_normalized("NFC", text)


def test_assets_stay_compact():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024


def test_package_stays_under_2_mb():
    """Everything the wheel installs (code, presets, assets), unpacked."""
    package = ASSETS.parent
    total = sum(p.stat().st_size for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 2_000_000
