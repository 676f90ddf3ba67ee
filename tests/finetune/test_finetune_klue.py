"""KLUE STS, NER, MRC and RE fine-tuned end to end from a kolm model dir and from a plain HF Llama dir."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import klue_samples as ks  # noqa: E402
from kolm.config import load_config  # noqa: E402
from kolm.data.klue_predict import SPECS, PredictSettings, load_examples, score  # noqa: E402
from kolm.errors import ConfigError, DataError  # noqa: E402
from kolm.finetune.trainer import finetune  # noqa: E402
from kolm.models.loading import load_model  # noqa: E402

TASKS = ["klue-sts", "klue-ner", "klue-mrc", "klue-re"]
DEV = {t: f"{t}-v1.1_dev.{'tsv' if t == 'klue-ner' else 'json'}" for t in TASKS}


@pytest.fixture(scope="module")
def klue_dir(tmp_path_factory):
    return ks.write_klue_dir(tmp_path_factory.mktemp("klue"))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return ks.build_llama_dir(tmp_path_factory.mktemp("llama"))


def _cfg(tmp_path, klue_dir, *over):
    return load_config(
        "tiny",
        [
            "finetune.max_steps=4",
            "finetune.eval_every=2",
            "finetune.batch_size=4",
            "finetune.seq_len=40",
            f"finetune.klue.dir={klue_dir}",
            "finetune.klue.doc_stride=8",
            "device=cpu",
            *over,
        ],
        run_dir=tmp_path / "run",
    ).finetune


@pytest.mark.parametrize("task", TASKS)
def test_lora_on_a_plain_llama_dir(tmp_path, klue_dir, llama_dir, task):
    cfg = _cfg(tmp_path, klue_dir, "finetune.lr=0.01")
    res = finetune(cfg, task, "lora", base_model=llama_dir, out=tmp_path / task, seed=0)
    adapter = tmp_path / task / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "tokenizer.json").is_file()
    info = json.loads((adapter / "kolm_task.json").read_text(encoding="utf-8"))
    assert info["task"] == task and info["seq_len"] == 40 and info["validation_file"].endswith(DEV[task])
    assert res.steps == 4 and 0 < res.trainable_params < res.total_params
    headline = SPECS[task].headline
    assert headline in res.validation and set(SPECS[task].metrics) <= set(res.validation)
    ev = json.loads((tmp_path / task / "eval.json").read_text(encoding="utf-8"))
    assert ev["validation"] == res.validation and ev["headline"] == headline
    losses = [
        r["loss"] for r in map(json.loads, (tmp_path / task / "metrics.jsonl").read_text().splitlines()) if "loss" in r
    ]
    assert losses and all(x == x for x in losses)  # logged, finite
    # the saved adapter (head included) loads through the one loader and scores the dev set
    model, tok = load_model(adapter, task=SPECS[task].model_task)
    examples = load_examples(task, klue_dir / DEV[task])
    metrics, preds = score(task, model, tok, examples, PredictSettings(seq_len=40, doc_stride=8))
    assert len(preds) == len(examples) and set(SPECS[task].metrics) <= set(metrics)


@pytest.mark.parametrize("task", TASKS)
def test_full_fine_tuning_of_a_kolm_model_saves_a_reloadable_task_model(tmp_path, klue_dir, tiny_base, task):
    cfg = _cfg(tmp_path, klue_dir, "finetune.max_steps=3", "finetune.eval_every=3")
    res = finetune(cfg, task, "full", base_model=tiny_base, out=tmp_path / task, seed=0)
    target = Path(res.output_dir)
    assert target.name == "model" and (target / "config.json").is_file()
    if SPECS[task].model_task in ("token-classify", "span-qa"):
        assert (target / "task_head.safetensors").is_file()
    model, tok = load_model(target, task=SPECS[task].model_task)
    base, _ = load_model(
        tiny_base,
        task=SPECS[task].model_task,
        labels=json.loads((target / "kolm_task.json").read_text(encoding="utf-8"))["labels"] or None,
    )
    moved = [
        name
        for (name, p), (_, q) in zip(model.named_parameters(), base.named_parameters())
        if p.shape == q.shape and not p.equal(q)
    ]
    assert moved, "full fine-tuning changed the weights"
    examples = load_examples(task, klue_dir / DEV[task])
    twice = [score(task, model, tok, examples, PredictSettings(seq_len=40, doc_stride=8))[0] for _ in range(2)]
    assert twice[0] == twice[1]  # deterministic scoring


def test_sts_learns_the_training_pairs(tmp_path, klue_dir, llama_dir):
    """A few full steps at a high rate fit the 8 training pairs: the training loss falls."""
    cfg = _cfg(tmp_path, klue_dir, "finetune.max_steps=12", "finetune.eval_every=12", "finetune.lr=0.003")
    finetune(cfg, "klue-sts", "full", base_model=llama_dir, out=tmp_path / "sts", seed=0)
    rows = [json.loads(x) for x in (tmp_path / "sts" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0]


def test_klue_task_needs_its_data(tmp_path, tiny_base):
    with pytest.raises(ConfigError, match="finetune.klue.dir"):
        load_config("tiny", ["finetune.tasks=[klue-ner]"], run_dir=tmp_path / "run")
    cfg = load_config(
        "tiny", ["finetune.tasks=[klue-ner]", f"finetune.klue.ner.train={tmp_path / 'none.tsv'}"], run_dir=tmp_path
    ).finetune
    with pytest.raises(DataError, match="none.tsv"):
        finetune(cfg, "klue-ner", "lora", base_model=tiny_base, out=tmp_path / "ner")


def test_prompt_tuning_is_refused_for_token_heads(tmp_path, klue_dir, llama_dir):
    cfg = _cfg(tmp_path, klue_dir)
    from kolm.errors import KolmError

    with pytest.raises(KolmError, match="prompt tuning"):
        finetune(cfg, "klue-ner", "prompt_tuning", base_model=llama_dir, out=tmp_path / "ner")
