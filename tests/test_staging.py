"""Nothing is lost when a stage fails: every real stage, given bad input after a good run, leaves the
previous outputs, manifest and config.yaml exactly as they were."""

from __future__ import annotations

import shutil

import pytest

from kolm.config import load_config
from kolm.errors import KolmError
from kolm.files import hash_path
from kolm.run import read_manifest, run_stage, staging_dir
from kolm.stages import get_stage

SMALL = [
    "device=cpu",
    "tokenizer.vocab_size=600",
    "tokenizer.compare=[]",
    "model.d_model=32",
    "model.n_layers=1",
    "pretrain.max_steps=2",
    "pretrain.compile=false",
    "pretrain.warmup_steps=1",
    "pretrain.batch_size=4",
    "pretrain.seq_len=32",
    "pretrain.eval_every=2",
    "pretrain.eval_batches=1",
    "pretrain.save_every=2",
    "pretrain.sample_every=0",
    "pretrain.sample_max_new_tokens=4",
    "finetune.tasks=[classify]",
    "finetune.max_steps=2",
    "finetune.eval_every=2",
    "finetune.batch_size=4",
    "finetune.classify.max_train=16",
    "finetune.classify.max_eval=8",
    "eval.fewshot=false",
    "eval.generation=false",
    "eval.lm_max_docs=2",
]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A finished tiny run of every stage (module-scoped: the failures below never change it)."""
    run_dir = tmp_path_factory.mktemp("staging") / "run"
    cfg = load_config("tiny", SMALL, run_dir=run_dir)
    for name in ("data", "tokenizer", "pretrain", "finetune", "eval"):
        run_stage(cfg, name)
    return run_dir


def _snapshot(run_dir, stage):
    folder = run_dir / get_stage(stage).dir
    return hash_path(folder), (run_dir / "config.yaml").read_text(encoding="utf-8")


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("stage", "bad"),
    [
        ("data", "binary"),
        ("tokenizer", ["tokenizer.compare=[bytelevel_bpe]", "tokenizer.compare_file={empty}"]),
        ("tokenizer", ["tokenizer.kind=unigram", "tokenizer.vocab_size=300"]),
        ("pretrain", ["pretrain.seq_len=512"]),
        ("finetune", ["finetune.base_model={missing}"]),
        ("eval", ["eval.lm_file={empty}"]),
    ],
)
def test_failed_stage_keeps_previous_outputs(good_run, tmp_path, stage, bad):
    before = _snapshot(good_run, stage)
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    if bad == "binary":  # the reported case: a binary file renamed .txt as the only source
        junk = tmp_path / "junk.txt"
        junk.write_bytes(bytes(range(256)) * 64)
        bad = [f"data.sources=[{{kind: file, path: '{junk}'}}]"]
    bad = [b.replace("{empty}", str(empty)).replace("{missing}", str(tmp_path / "no-such-model")) for b in bad]
    cfg = load_config("tiny", SMALL + bad, run_dir=good_run)
    with pytest.raises(KolmError):
        run_stage(cfg, stage, force=True)
    assert _snapshot(good_run, stage) == before
    assert read_manifest(good_run / get_stage(stage).dir)["status"] == "done"
    failed = read_manifest(staging_dir(good_run, get_stage(stage)))
    assert failed is not None and failed["status"] == "failed"
    if not get_stage(stage).resumable:
        shutil.rmtree(staging_dir(good_run, get_stage(stage)))


def test_interrupted_swap_is_recovered(good_run):
    """A crash between the two renames of a swap leaves `<stage>.previous`; the next run puts it back."""
    final = good_run / "eval"
    before = hash_path(final)
    previous = good_run / "eval.previous"
    final.rename(previous)
    cfg = load_config("tiny", SMALL, run_dir=good_run)
    assert run_stage(cfg, "eval") is None  # recovered, then found up to date
    assert hash_path(final) == before and not previous.exists()
