"""`kolm eval --suite klue`: the KLUE paper's table for fine-tuned models, its statuses, the CLI and the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import klue_samples as ks  # noqa: E402
from kolm.config import load_config  # noqa: E402
from kolm.data.klue import KlueDataConfig  # noqa: E402
from kolm.data.klue_predict import load_examples, score  # noqa: E402
from kolm.data.tasks import TaskDataConfig  # noqa: E402
from kolm.evaluate.config import EvalConfig  # noqa: E402
from kolm.evaluate.klue_suite import ROWS, find_task_models, klue_table  # noqa: E402
from kolm.evaluate.stage import evaluate  # noqa: E402
from kolm.finetune.trainer import finetune  # noqa: E402
from kolm.models.loading import load_model  # noqa: E402


@pytest.fixture(scope="module")
def klue_run(tmp_path_factory):
    """A run dir with KLUE-STS (LoRA) and KLUE-MRC (full) fine-tuned from a tiny Llama, plus a YNAT classifier."""
    root = tmp_path_factory.mktemp("klue-run")
    data = ks.write_klue_dir(root / "klue")
    ks.write_ynat(data / "klue-ynat-v1.1_train.json")
    ks.write_ynat(data / "klue-ynat-v1.1_dev.json")
    llama = ks.build_llama_dir(root / "llama")
    cfg = load_config(
        "tiny",
        [
            "finetune.max_steps=2",
            "finetune.eval_every=2",
            "finetune.batch_size=4",
            "finetune.seq_len=40",
            f"finetune.klue.dir={data}",
            "finetune.classify.kind=klue-ynat",
            f"finetune.classify.train={data / 'klue-ynat-v1.1_train.json'}",
            f"finetune.classify.validation={data / 'klue-ynat-v1.1_dev.json'}",
            "device=cpu",
        ],
        run_dir=root / "run",
    ).finetune
    ft = root / "run" / "finetune"
    finetune(cfg, "klue-sts", "lora", base_model=llama, out=ft / "klue-sts")
    finetune(cfg, "klue-mrc", "full", base_model=llama, out=ft / "klue-mrc")
    finetune(cfg, "classify", "lora", base_model=llama, out=ft / "classify")
    return root


def test_suite_table_statuses_and_scores(klue_run, tmp_path):
    data = klue_run / "klue"
    res = evaluate(
        EvalConfig(suite="klue"), model=klue_run / "run", out=tmp_path / "eval", klue_data=KlueDataConfig(dir=str(data))
    )
    rows = {r["name"]: r for r in res.results["klue"]["rows"]}
    assert [r.name for r in ROWS] == list(rows) == ["TC (YNAT)", "STS", "NLI", "NER", "RE", "DP", "MRC", "WOS"]
    assert rows["DP"]["status"] == rows["WOS"]["status"] == "not covered"
    assert rows["NLI"]["status"] == "no data"  # no klue-nli file in the folder
    assert rows["NER"]["status"] == rows["RE"]["status"] == "not fine-tuned"
    assert rows["STS"]["status"] == rows["MRC"]["status"] == rows["TC (YNAT)"]["status"] == "ok"
    # the suite's numbers are the task model's official scores on the dev file
    model, tok = load_model(klue_run / "run" / "finetune" / "klue-sts", task="classify")
    expected, _ = score("klue-sts", model, tok, load_examples("klue-sts", data / "klue-sts-v1.1_dev.json"))
    assert rows["STS"]["scores"] == expected
    assert set(rows["MRC"]["scores"]) >= {"exact_match", "rouge_w", "char_f1"}
    assert 0 <= rows["TC (YNAT)"]["scores"]["macro_f1"] <= 100
    table = (tmp_path / "eval" / "klue.md").read_text(encoding="utf-8")
    assert table.startswith("|  | TC (YNAT) | STS | NLI | NER | RE | DP | MRC | WOS |")
    assert "not covered" in table and "no data" in table and "not fine-tuned" in table
    assert f"{expected['pearson']:.2f} / {expected['f1']:.2f}" in table
    assert "KLUE" in (tmp_path / "eval" / "summary.md").read_text(encoding="utf-8")
    assert res.metrics["klue.klue-sts.pearson"] == expected["pearson"]


def test_suite_without_a_folder_uses_the_recorded_dev_file(klue_run, tmp_path):
    res = evaluate(EvalConfig(suite="klue"), model=klue_run / "run" / "finetune" / "klue-mrc", out=tmp_path)
    rows = {r["task"]: r for r in res.results["klue"]["rows"]}
    assert rows["klue-mrc"]["status"] == "ok" and rows["klue-mrc"]["dev"].endswith("klue-mrc-v1.1_dev.json")
    assert rows["klue-sts"]["status"] == "no data"  # a single task model: the others have nothing to score


def test_find_task_models(klue_run):
    run = klue_run / "run"
    found = find_task_models(run)
    assert set(found) == {"klue-sts", "klue-mrc", "klue-ynat"}
    assert find_task_models(run / "finetune") == found
    assert find_task_models(run / "finetune" / "klue-sts" / "adapter") == {
        "klue-sts": run / "finetune" / "klue-sts" / "adapter"
    }
    assert find_task_models(klue_run / "llama") == {}


def test_table_marks_every_status():
    suite = {
        "rows": [
            {"name": r.name, "metrics": list(r.metrics), "status": "ok" if r.task == "klue-re" else "no data"}
            | ({"scores": {"micro_f1": 12.345, "auprc": 50.0}} if r.task == "klue-re" else {})
            for r in ROWS
        ]
    }
    table = klue_table(suite)
    assert "| micro F1 / AUPRC |" in table and "12.35 / 50.00" in table
    assert table.count("no data") == 7


def test_cli_finetune_task_then_eval_suite_then_report(klue_run, tmp_path, capsys):
    from kolm.cli.main import main

    run_dir = tmp_path / "run"
    common = ["--run-dir", str(run_dir), "device=cpu"]
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "finetune",
                "--task",
                "klue-re",
                *common,
                f"finetune.base_model={klue_run / 'llama'}",
                f"finetune.klue.dir={klue_run / 'klue'}",
                "finetune.max_steps=2",
                "finetune.batch_size=4",
                "finetune.seq_len=40",
            ]
        )
    assert exc.value.code == 0
    assert json.loads((run_dir / "finetune" / "klue-re" / "eval.json").read_text())["task"] == "klue-re"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--suite", "klue", *common, f"eval.klue_dir={klue_run / 'klue'}"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "| TC (YNAT) | STS | NLI | NER | RE | DP | MRC | WOS |" in out and "micro F1 / AUPRC" in out
    re_cell = out.strip().splitlines()[-1].split("|")[6].strip()  # "", score, TC, STS, NLI, NER, RE
    assert re_cell.count("/") == 1 and re_cell != "not fine-tuned"
    with pytest.raises(SystemExit) as exc:
        main(["report", str(run_dir)])
    assert exc.value.code in (0, None)
    report = (run_dir / "report" / "report.md").read_text(encoding="utf-8")
    assert "KLUE benchmark" in report and "| TC (YNAT) | STS |" in report


def test_the_eval_stage_reports_fine_tuned_klue_models(klue_run, tmp_path):
    cfg = EvalConfig(lm=False, fewshot=False, generation=False, safety=False)
    ynat = klue_run / "klue" / "klue-ynat-v1.1_dev.json"
    res = evaluate(
        cfg,
        model=klue_run / "llama",
        out=tmp_path,
        finetune_dir=klue_run / "run" / "finetune",
        classify_data=TaskDataConfig(kind="klue-ynat", train=str(ynat), validation=str(ynat)),
        klue_data=KlueDataConfig(dir=str(klue_run / "klue")),
    )
    assert res.results["finetuned"]["classify"]["n"] == len(ks.YNAT)
    rows = {r["task"]: r for r in res.results["klue"]["rows"]}
    assert rows["klue-sts"]["status"] == rows["klue-mrc"]["status"] == "ok"
    assert "## KLUE benchmark" in (tmp_path / "eval.md").read_text(encoding="utf-8")
    assert Path(rows["klue-sts"]["model"]) in res.inputs


def test_cli_shortcuts_stand_for_overrides(capsys):
    from kolm.cli.main import main, shortcut_overrides

    assert shortcut_overrides("finetune", {"task": "klue-sts,klue-ner"}) == ["finetune.tasks=[klue-sts,klue-ner]"]
    assert shortcut_overrides("eval", {"suite": "klue", "model": "runs/x", "task": None}) == [
        "eval.suite=klue",
        "eval.model=runs/x",
    ]
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert "--suite" in out and "--model" in out
