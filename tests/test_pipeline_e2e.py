"""The real chain end to end: `kolm pipeline --config tiny` through the command line, then `kolm merge`.

Nothing is faked: the embedded corpus is curated, a tokenizer trained, a small
model pretrained, fine-tuned (LoRA, both tasks) and evaluated, and the report
written. The overrides only shrink sizes and step counts so that the run takes
well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json

import pytest
import torch

from kolm.cli.main import main
from kolm.config import load_config
from kolm.stages import STAGES

OVERRIDES = [
    "device=cpu",
    "tokenizer.kiwi_docs=5",
    "model.d_model=64",
    "model.n_layers=2",
    "pretrain.max_steps=12",
    "pretrain.warmup_steps=2",
    "pretrain.seq_len=64",
    "pretrain.batch_size=8",
    "pretrain.eval_every=6",
    "pretrain.eval_batches=2",
    "pretrain.save_every=6",
    "pretrain.log_every=3",
    "pretrain.sample_max_new_tokens=4",
    "pretrain.precision=fp32",
    "pretrain.compile=false",  # the preset compiles; 12 steps do not pay for it
    "finetune.max_steps=4",
    "finetune.eval_every=2",
    "finetune.warmup_steps=1",
    "finetune.batch_size=8",
    "finetune.seq_len=64",
    "finetune.classify.max_train=64",
    "finetune.classify.max_eval=16",
    "finetune.sft.max_train=32",
    "align.steps=2",
    "align.batch_size=4",
    "align.eval_prompts=4",
    "align.max_new_tokens=4",
    "align.ppo_epochs=1",
    "eval.lm_max_docs=8",
    "eval.fewshot_k=[0,1]",
    "eval.fewshot_max_examples=8",
    "eval.max_prompts=2",
    "eval.variation_prompts=1",
    "eval.max_new_tokens=6",
]


def _cli(args: list[str], capsys) -> str:
    """Run `kolm ARGS` in this process; it must exit with code 0. Returns what it printed."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    assert exc.value.code in (0, None), f"kolm {args[0]} exited with {exc.value.code}: {out.err[-2000:]}"
    return out.out


@pytest.mark.timeout(300)
def test_pipeline_tiny_end_to_end_then_merge(tmp_path, capsys):
    run = tmp_path / "run"
    printed = _cli(["pipeline", "--config", "tiny", "--run-dir", str(run), *OVERRIDES], capsys)
    assert str(run / "report" / "report.html") in printed

    # Every stage the preset's pipeline names ran and says so in its manifest.
    names = load_config("tiny", OVERRIDES).pipeline.stages
    assert set(names) >= {"data", "tokenizer", "pretrain", "finetune", "eval"}
    ran = [s for s in STAGES if s.name in names]
    for stage in ran:
        manifest = json.loads((run / stage.dir / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["status"] == "done", f"{stage.name}: {manifest.get('status')} {manifest.get('error', '')}"
    pretrain = json.loads((run / "pretrain" / "manifest.json").read_text(encoding="utf-8"))
    assert pretrain["metrics"]["steps"] == 12

    # The report has one section per stage that ran, plus the stage table, config and environment.
    report = (run / "report" / "report.md").read_text(encoding="utf-8")
    headings = {line for line in report.splitlines() if line.startswith("## ")}
    assert {f"## {s.name}" for s in ran} <= headings
    assert {"## Stages (단계)", "## Configuration (설정)", "## Environment (환경)"} <= headings
    for stage in ran:
        assert f"| {stage.name} | done |" in report
    html = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html

    # `kolm merge` folds the SFT adapter into the pretrained model; the result loads on its own
    # and computes what base + adapter computes.
    adapter = run / "finetune" / "sft" / "adapter"
    merged_dir = tmp_path / "merged"
    assert str(merged_dir) in _cli(["merge", str(adapter), "--out", str(merged_dir)], capsys)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import kolm.models.registry  # noqa: F401  (registers kolm_gpt with the Auto classes)

    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    tok = AutoTokenizer.from_pretrained(merged_dir)
    base = AutoModelForCausalLM.from_pretrained(run / "pretrain" / "final").eval()
    ids = tok("오늘은 날씨가 맑다", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        ours = merged(input_ids=ids).logits
        reference = PeftModel.from_pretrained(base, adapter).eval()(input_ids=ids).logits
    assert ours.shape == (1, ids.shape[1], len(tok))
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)
    assert not torch.allclose(ours, plain, atol=1e-4)  # the adapter's update was folded in
