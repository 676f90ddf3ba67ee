"""Where evaluation reads its inputs: held-out text, labelled files, prompts, models.

Every reader fails with `kolm.errors.DataError` naming the file and the fix
(missing column, empty split, label outside the declared set).
"""

from __future__ import annotations

import csv
import gzip
import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kolm.errors import CheckpointError, DataError

__all__ = [
    "assets_dir", "read_records", "read_texts", "read_split_texts", "read_labelled", "read_prompts",
    "load_causal_lm", "load_finetuned", "load_classifier", "count_parameters",
]


def assets_dir() -> Path:
    """The embedded corpus shipped with kolm."""
    return Path(__file__).resolve().parents[1] / "assets"


def _nfc(text: Any) -> str:
    return unicodedata.normalize("NFC", str(text if text is not None else "")).strip()


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl(.gz), .json (list), .tsv or .csv file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    name = name.removesuffix(".gz")
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            if name.endswith(".jsonl"):
                return [json.loads(line) for line in fh if line.strip()]
            if name.endswith(".json"):
                data = json.load(fh)
                if not isinstance(data, list):
                    raise DataError(f"{path}: expected a JSON list of records")
                return data
            if name.endswith((".tsv", ".csv")):
                return list(csv.DictReader(fh, delimiter="\t" if name.endswith(".tsv") else ","))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; convert it to UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    raise DataError(f"{path}: unsupported file type; use .jsonl, .json, .tsv or .csv")


def _column(rows: list[dict[str, Any]], field: str, path: Path | str) -> list[Any]:
    if not rows:
        raise DataError(f"{path} holds no examples")
    if all(field not in r for r in rows):
        raise DataError(f"{path}: column {field!r} not found; columns are {sorted(rows[0])}; set the column name in the eval config")
    return [r.get(field) for r in rows]


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """Documents of a .txt (one per line), .jsonl/.json/.tsv/.csv or .parquet file."""
    path = Path(path)
    if path.suffix == ".txt":
        if not path.exists():
            raise DataError(f"file not found: {path}")
        return [t for t in (_nfc(line) for line in path.read_text(encoding="utf-8").splitlines()) if t]
    if path.suffix == ".parquet" or path.is_dir():
        return list(_parquet_texts([path] if path.is_file() else sorted(path.glob("*.parquet")), field))
    return [t for t in (_nfc(v) for v in _column(read_records(path), field, path)) if t]


def _parquet_texts(files: list[Path], field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    for f in files:
        table = pq.read_table(f)
        if field not in table.column_names:
            raise DataError(f"{f}: column {field!r} not found; columns are {table.column_names}; set eval.text_field")
        for value in table.column(field).to_pylist():
            if value and str(value).strip():
                yield str(value)


def read_split_texts(data_dir: Path, split: str = "validation", field: str = "text") -> list[str]:
    """Texts of a data-stage split (`data/<split>/part-*.parquet`); DataError when it is empty."""
    split_dir = Path(data_dir) / split
    files = sorted(split_dir.glob("*.parquet"))
    if not files:
        raise DataError(f"the {split} split at {split_dir} is empty (no parquet shards); re-run `kolm data` or set eval.lm_file")
    texts = list(_parquet_texts(files, field))
    if not texts:
        raise DataError(f"the {split} split at {split_dir} holds no text; re-run `kolm data` with a larger validation share or set eval.lm_file")
    return texts


def read_labelled(path: str | Path, labels: list[str] | None, text_field: str = "text", label_field: str = "label") -> tuple[list[tuple[str, str]], list[str]]:
    """(text, label name) pairs and the label set; labels outside a declared set raise DataError.

    A raw label is accepted as a name in `labels` or as an integer index into it
    (NSMC stores 0/1). Without declared labels, the sorted set found is used.
    """
    rows = read_records(path)
    texts, raw = _column(rows, text_field, path), _column(rows, label_field, path)
    pairs = [(_nfc(t), str(lab).strip()) for t, lab in zip(texts, raw) if _nfc(t) and lab not in (None, "")]
    if not pairs:
        raise DataError(f"{path} holds no labelled examples (columns {text_field!r}, {label_field!r})")
    names = [str(x) for x in labels] if labels else sorted({lab for _, lab in pairs})
    out, bad = [], []
    for text, lab in pairs:
        if lab in names:
            out.append((text, lab))
        elif lab.isdigit() and int(lab) < len(names) and labels:
            out.append((text, names[int(lab)]))
        else:
            bad.append(lab)
    if bad:
        raise DataError(f"{path}: {len(bad)} label(s) outside the declared set {names}, e.g. {sorted(set(bad))[:5]}; fix the file or the declared labels")
    return out, names


def read_prompts(path: str | Path) -> list[dict[str, str]]:
    """Prompts {id, prompt, reference?, category?} from a jsonl file."""
    rows = read_records(path)
    prompts = _column(rows, "prompt", path)
    out = []
    for i, (row, p) in enumerate(zip(rows, prompts)):
        if not p:
            continue
        out.append({"id": str(row.get("id", i)), "category": str(row.get("category", "")), "prompt": _nfc(p), "reference": _nfc(row.get("reference", ""))})
    if not out:
        raise DataError(f"{path} holds no prompts")
    return out


# ----------------------------------------------------------------------------
# Models


def _register_kolm() -> None:
    try:
        import kolm.models.registry  # noqa: F401  (registers kolm architectures with transformers)
    except ModuleNotFoundError as exc:
        if exc.name != "kolm.models.registry":
            raise


def load_causal_lm(path: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from an HF model dir holding both."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _register_kolm()
    path = Path(path)
    if not (path / "config.json").exists():
        raise CheckpointError(f"no model at {path} (config.json missing); run `kolm pretrain` or set eval.model=<model dir>")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    return model, tokenizer


def _task_info(path: Path) -> dict[str, Any]:
    info = path / "kolm_task.json"
    return json.loads(info.read_text(encoding="utf-8")) if info.exists() else {}


def _base_of(adapter: Path, info: dict[str, Any], fallback: Path | None) -> Path:
    candidates = [info.get("base_model")]
    cfg = adapter / "adapter_config.json"
    if cfg.exists():
        candidates.append(json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path"))
    candidates.append(str(fallback) if fallback else None)
    for c in candidates:
        if c and (Path(c) / "config.json").exists():
            return Path(c)
    raise CheckpointError(f"base model of the adapter {adapter} not found (tried {[c for c in candidates if c]}); set finetune.base_model")


def load_finetuned(task_dir: Path, kind: str, device: str = "cpu", base_fallback: Path | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, task info) of `finetune/<task>/`: a PEFT `adapter/` or a full `model/`.

    `kind` is "classify" (sequence classifier) or "sft" (causal LM).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    _register_kolm()
    full, adapter = task_dir / "model", task_dir / "adapter"
    path = full if (full / "config.json").exists() else adapter
    if not path.exists():
        raise CheckpointError(f"no fine-tuned model in {task_dir} (expected model/ or adapter/); run `kolm finetune`")
    info = _task_info(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    auto = AutoModelForSequenceClassification if kind == "classify" else AutoModelForCausalLM
    kwargs: dict[str, Any] = {}
    if kind == "classify" and info.get("labels"):
        labels = info["labels"]
        kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {v: i for i, v in enumerate(labels)}}
        if tokenizer.pad_token_id is not None:
            kwargs["pad_token_id"] = tokenizer.pad_token_id
    if path == full:
        model = auto.from_pretrained(path, **kwargs)
    else:
        import peft

        base = auto.from_pretrained(_base_of(path, info, base_fallback), **kwargs)
        model = peft.PeftModel.from_pretrained(base, path)
    return model.to(device).eval(), tokenizer, info


def load_classifier(task_dir: Path, device: str = "cpu", base_fallback: Path | None = None) -> tuple[Any, Any, list[str]]:
    """(model, tokenizer, label names) of a fine-tuned classifier."""
    model, tokenizer, info = load_finetuned(task_dir, "classify", device, base_fallback)
    labels = info.get("labels") or [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    return model, tokenizer, [str(x) for x in labels]


def count_parameters(model: Any) -> int:
    """Number of parameters (all of them)."""
    return sum(p.numel() for p in model.parameters())
