"""`kolm eval --suite klue`: every KLUE task's official metric for a model, in the KLUE paper's table.

The paper's eight tasks in its order: TC (YNAT), STS, NLI, NER, RE, DP, MRC,
WOS. A task's score comes from the model fine-tuned on it, found under the
path given (a run dir's `finetune/<task>/`, a finetune stage dir, or one
fine-tuned task model, whose `kolm_task.json` names its task), scored on the
task's dev file (the official name in the KLUE folder, or the file set for
it). YNAT and NLI are classification: a `klue-ynat`/`klue-nli` model dir,
or the run's `classify` model when its labels are that task's. DP and WOS are
listed as "not covered"; a task without a dev file is "no data", one without
a fine-tuned model "not fine-tuned". Without a KLUE folder, a model is scored
on the dev file it was validated on while fine-tuning (`kolm_task.json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kolm.data.klue import KLUE_TASKS, KlueDataConfig, official_file
from kolm.data.klue_predict import SPECS, PredictSettings, load_examples, score
from kolm.errors import CheckpointError, DataError
from kolm.evaluate.config import EvalConfig
from kolm.progress import Progress

__all__ = ["SuiteRow", "ROWS", "YNAT_LABELS", "find_task_models", "klue_suite", "suite_for", "suite_only", "klue_table"]

YNAT_LABELS = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]


@dataclass(frozen=True)
class SuiteRow:
    """One column of the KLUE paper's table."""

    name: str  # as the paper writes it
    task: str | None  # kolm's task name; None = not covered by kolm
    metrics: tuple[str, ...]  # the paper's metrics for it


ROWS = (
    SuiteRow("TC (YNAT)", "klue-ynat", ("macro_f1",)),
    SuiteRow("STS", "klue-sts", ("pearson", "f1")),
    SuiteRow("NLI", "klue-nli", ("accuracy",)),
    SuiteRow("NER", "klue-ner", ("entity_f1", "char_f1")),
    SuiteRow("RE", "klue-re", ("micro_f1", "auprc")),
    SuiteRow("DP", None, ("uas", "las")),
    SuiteRow("MRC", "klue-mrc", ("exact_match", "rouge_w")),
    SuiteRow("WOS", None, ("jga", "slot_f1")),
)
_METRIC_NAMES = {
    "macro_f1": "macro F1",
    "pearson": "Pearson r",
    "f1": "F1",
    "accuracy": "accuracy",
    "entity_f1": "entity F1",
    "char_f1": "char F1",
    "micro_f1": "micro F1",
    "auprc": "AUPRC",
    "uas": "UAS",
    "las": "LAS",
    "exact_match": "EM",
    "rouge_w": "ROUGE-W",
    "jga": "JGA",
    "slot_f1": "slot F1",
}
_CLASSIFY_KIND = {"klue-ynat": "klue-ynat", "klue-nli": "klue-nli"}


def _task_of(model_dir: Path) -> tuple[str | None, list[str]]:
    from kolm.models.loading import find_model_dir, task_info

    try:
        info = task_info(find_model_dir(model_dir))
    except CheckpointError:
        return None, []
    return info.get("task"), [str(x) for x in info.get("labels") or []]


def _classify_task(labels: list[str]) -> str | None:
    """Which KLUE task a classifier's labels belong to: NLI's three, or topics among YNAT's seven."""
    from kolm.data.tasks import NLI_LABELS

    if labels == NLI_LABELS:
        return "klue-nli"
    return "klue-ynat" if labels and set(labels) <= set(YNAT_LABELS) else None


def find_task_models(path: str | Path) -> dict[str, Path]:
    """Task name -> fine-tuned model dir, for a run dir, a finetune dir or one fine-tuned task model."""
    path = Path(path)
    task, labels = _task_of(path)
    if task is not None and task != "sft":
        if task == "classify":
            task = _classify_task(labels)
        return {task: path} if task else {}
    found: dict[str, Path] = {}
    for root in (path / "finetune", path):
        for name in (*KLUE_TASKS, "klue-ynat", "klue-nli", "classify"):
            d = root / name
            if not d.is_dir() or (
                name == "classify" and (root / "klue-ynat").is_dir() and (root / "klue-nli").is_dir()
            ):
                continue
            t, labels = _task_of(d)
            if t == "classify":
                t = _classify_task(labels)
            if t and t not in found:
                found[t] = d
    return found


def _settings(model_dir: Path) -> PredictSettings:
    from kolm.models.loading import find_model_dir, task_info

    info = task_info(find_model_dir(model_dir))
    return PredictSettings(
        seq_len=int(info.get("seq_len", 128)),
        doc_stride=int(info.get("doc_stride", 32)),
        max_answer_tokens=int(info.get("max_answer_tokens", 30)),
    )


def _recorded_dev(model_dir: Path) -> str | None:
    from kolm.models.loading import find_model_dir, task_info

    return task_info(find_model_dir(model_dir)).get("validation_file")


def _classification(task: str, model_dir: Path, dev: Path, device: str, limit: int) -> dict[str, Any]:
    """YNAT (macro F1) and NLI (accuracy) through the sequence classifier, in %."""
    from kolm.data.tasks import read_classification
    from kolm.evaluate.classifier import classifier_labels, predict_labels
    from kolm.metrics.classification import classification_report
    from kolm.models.loading import load_model

    model, tok = load_model(model_dir, task="classify", device=device)
    labels = classifier_labels(model, model_dir)
    pairs = read_classification(_CLASSIFY_KIND[task], dev)[: limit or None]
    unknown = sorted({str(lab) for _, lab in pairs} - set(labels))
    if unknown:
        raise DataError(
            f"{dev}: labels {unknown[:5]} are not among the classifier's {labels}; fine-tune on all of them"
        )
    gold = [str(lab) for _, lab in pairs]
    preds = predict_labels(model, tok, [t for t, _ in pairs], _settings(model_dir).seq_len)
    rep = classification_report([labels.index(g) for g in gold], preds, labels)
    return {"macro_f1": round(100 * rep["macro_f1"], 4), "accuracy": round(100 * rep["accuracy"], 4), "n": len(pairs)}


def klue_suite(
    model: str | Path,
    *,
    data_dir: str | Path | None,
    dev_files: dict[str, str | Path] | None = None,
    device: str = "cpu",
    max_examples: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score every KLUE task that has a fine-tuned model under `model` and a dev file; return the table's data.

    `data_dir` holds the official KLUE files; `dev_files` (task -> path)
    overrides a task's dev file. Each row: {name, task, metrics, status,
    scores, model, n}; status is "ok", "not covered", "no data" or "not fine-tuned".
    """
    from kolm.models.loading import load_model

    progress = progress or Progress(enabled=False)
    models = find_task_models(model)
    rows = []
    for row in ROWS:
        entry: dict[str, Any] = {"name": row.name, "task": row.task, "metrics": list(row.metrics), "scores": {}}
        rows.append(entry)
        if row.task is None:
            entry["status"] = "not covered"
            continue
        mdir = models.get(row.task)
        dev = (dev_files or {}).get(row.task) or (official_file(data_dir, row.task, "validation") if data_dir else None)
        if (dev is None or not Path(dev).is_file()) and mdir is not None:
            dev = _recorded_dev(mdir)  # the dev file the model was validated on while fine-tuning
        if dev is None or not Path(dev).is_file():
            entry["status"] = "no data"
            continue
        if mdir is None:
            entry["status"] = "not fine-tuned"
            continue
        entry.update(model=str(mdir), dev=str(dev))
        if row.task in _CLASSIFY_KIND:
            scores = _classification(row.task, mdir, Path(dev), device, max_examples)
        else:
            examples = load_examples(row.task, dev, max_examples)
            m, tok = load_model(mdir, task=SPECS[row.task].model_task, device=device)
            scores, _ = score(row.task, m, tok, examples, _settings(mdir))
            del m
        entry.update(status="ok", scores=scores, n=scores.get("n"))
        progress.log(f"eval klue: {row.name} " + ", ".join(f"{k}={scores[k]:.2f}" for k in row.metrics))
    return {"model": str(model), "data_dir": str(data_dir) if data_dir else None, "rows": rows}


def suite_for(
    cfg: EvalConfig, path: Path, device: str, klue_data: KlueDataConfig | None, progress: Progress
) -> dict[str, Any]:
    """The KLUE suite of the models under `path`, with the dev files of `eval.klue_dir` or `finetune.klue`."""
    dev_files = {}
    for task in KLUE_TASKS:
        if klue_data is not None and (f := klue_data.files(task, "validation")) is not None:
            dev_files[task] = f
    data_dir = cfg.klue_dir or (klue_data.dir if klue_data is not None else None)
    if cfg.klue_dir:  # an explicit folder wins over finetune.klue's defaults
        dev_files = {t: f for t, f in dev_files.items() if getattr(klue_data, t.removeprefix("klue-")).validation}
    return klue_suite(
        path,
        data_dir=data_dir,
        dev_files=dev_files,
        device=device,
        max_examples=cfg.klue_max_examples,
        progress=progress,
    )


def suite_only(
    cfg: EvalConfig, path: Path, out: Path, device: str, klue_data: KlueDataConfig | None, progress: Progress
) -> tuple[dict[str, Any], dict[str, Path], list[Path]]:
    """`kolm eval --suite klue`: the table alone, written as klue.md (printed by the CLI), eval.json, eval.md, summary.md.

    Returns (eval.json content, files written, model dirs and dev files read).
    """
    from kolm.evaluate import tables
    from kolm.files import write_json

    suite = suite_for(cfg, path, device, klue_data, progress)
    res = {"model": str(path), "device": device, "klue": suite, "notes": []}
    out.mkdir(parents=True, exist_ok=True)
    files = {"eval": write_json(out / "eval.json", res), "klue": out / "klue.md"}
    files["klue"].write_text(klue_table(suite) + "\n", encoding="utf-8")
    for name in ("eval.md", "summary.md"):
        (out / name).write_text(tables.markdown(res, None, full=name == "eval.md"), encoding="utf-8")
    files.update(report=out / "eval.md", summary=out / "summary.md")
    used = [Path(r[k]) for r in suite["rows"] for k in ("model", "dev") if r.get(k)]
    return res, files, used


def klue_table(suite: dict[str, Any]) -> str:
    """The suite as the KLUE paper's table: one column per task, its metrics as 'a / b' (in %)."""
    head = "| " + " | ".join(["", *(r["name"] for r in suite["rows"])]) + " |"
    metric = (
        "| metric | " + " | ".join(" / ".join(_METRIC_NAMES[m] for m in r["metrics"]) for r in suite["rows"]) + " |"
    )
    cells = []
    for r in suite["rows"]:
        if r["status"] == "ok":
            cells.append(" / ".join(f"{r['scores'][m]:.2f}" for m in r["metrics"]))
        else:
            cells.append(r["status"])
    return "\n".join([head, "|" + "---|" * (len(suite["rows"]) + 1), metric, "| score | " + " | ".join(cells) + " |"])
