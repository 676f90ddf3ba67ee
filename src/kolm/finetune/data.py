"""Fine-tuning data: labelled texts for classification and chat examples for instruction SFT.

Readers accept the official formats our users already have (NSMC tsv, KLUE
json, Alpaca json, chat `messages` jsonl) and the embedded corpus. Problems a
user can fix (a missing column, labels outside the declared set, an empty
split) raise `DataError` naming the file and the fix.
"""

from __future__ import annotations

import csv
import json
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from kolm.errors import DataError

__all__ = [
    "ClassificationData",
    "load_classification",
    "load_sft",
    "encode_classification",
    "encode_sft",
    "to_messages",
    "assets_dir",
]

# Label names of the binary sentiment sets (NSMC and the embedded reviews): 0 = negative, 1 = positive.
SENTIMENT_LABELS = ["부정", "긍정"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]


def assets_dir() -> Path:
    """The embedded corpus shipped with kolm."""
    return Path(__file__).resolve().parents[1] / "assets"


@dataclass
class ClassificationData:
    """Texts and integer labels for train/validation/test, with the label names."""

    labels: list[str]
    train: list[tuple[str, int]]
    validation: list[tuple[str, int]]
    test: list[tuple[str, int]]


# ----------------------------------------------------------------------------
# Reading files


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a jsonl, json (list), tsv or csv file, as dicts."""
    if not path.exists():
        raise DataError(f"file not found: {path}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    try:
        if suffix in (".jsonl", ".jsonl.gz"):
            import gzip

            opener = gzip.open if suffix.endswith(".gz") else open
            rows, broken = [], 0
            with opener(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        broken += 1
            if broken and not rows:
                raise DataError(f"{path}: no line is valid JSON ({broken} broken lines)")
            return rows
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):  # {"data": [...]} style containers
                data = next((v for v in data.values() if isinstance(v, list)), [])
            if not isinstance(data, list):
                raise DataError(f"{path}: expected a JSON list of records")
            return data
        if suffix in (".tsv", ".csv", ".txt"):
            delimiter = "," if suffix == ".csv" else "\t"
            with open(path, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
                return list(reader)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; convert it (예: iconv -f cp949 -t utf-8)") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .tsv or .csv")


def _column(rows: list[dict[str, Any]], field: str, path: Path) -> list[Any]:
    if not rows:
        raise DataError(f"{path} holds no examples")
    missing = sum(1 for r in rows if field not in r)
    if missing == len(rows):
        raise DataError(f"{path}: column {field!r} not found; columns are {sorted(rows[0])}; set the field name in the config")
    return [r.get(field) for r in rows]


def _nfc(text: Any) -> str:
    return unicodedata.normalize("NFC", str(text or "")).strip()


# ----------------------------------------------------------------------------
# Classification


def _records_for(kind: str, path: Path, text_field: str, label_field: str) -> list[tuple[str, Any]]:
    rows = _read_records(path)
    if kind == "nsmc":
        texts, labels = _column(rows, "document", path), _column(rows, "label", path)
    elif kind == "klue-ynat":
        texts, labels = _column(rows, "title", path), _column(rows, "label", path)
    elif kind == "klue-nli":
        prem, hyp = _column(rows, "premise", path), _column(rows, "hypothesis", path)
        texts = [f"전제: {p}\n가설: {h}" for p, h in zip(prem, hyp)]
        labels = _column(rows, "gold_label" if "gold_label" in rows[0] else "label", path)
    else:
        texts, labels = _column(rows, text_field, path), _column(rows, label_field, path)
    return [(_nfc(t), lab) for t, lab in zip(texts, labels) if _nfc(t) and lab not in (None, "")]


def _label_names(kind: str, declared: list[str], found: Iterable[Any]) -> list[str]:
    if declared:
        return list(declared)
    if kind in ("nsmc", "embedded"):
        return list(SENTIMENT_LABELS)
    if kind == "klue-nli":
        return list(NLI_LABELS)
    return sorted({str(v) for v in found})


def _to_index(pairs: list[tuple[str, Any]], names: list[str], where: str) -> list[tuple[str, int]]:
    """Map raw labels (names or integer ids) to indices; reject labels outside the set."""
    out, bad = [], []
    for text, raw in pairs:
        key = str(raw).strip()
        if key in names:
            out.append((text, names.index(key)))
        elif key.lstrip("-").isdigit() and 0 <= int(key) < len(names):
            out.append((text, int(key)))
        else:
            bad.append(key)
    if bad:
        sample = sorted(set(bad))[:5]
        raise DataError(f"{where}: {len(bad)} label(s) outside the declared set {names}, e.g. {sample}; fix the data or finetune.classify.labels")
    return out


def load_classification(cfg: Any, seed: int = 0) -> ClassificationData:
    """Train/validation/test examples of the `classify` task from a TaskDataConfig."""
    if cfg.kind == "embedded":
        root = assets_dir()
        train = [(_nfc(r["text"]), int(r["label"])) for r in _read_records(root / "reviews_train.jsonl")]
        test = [(_nfc(r["text"]), int(r["label"])) for r in _read_records(root / "reviews_test.jsonl")]
        names = list(cfg.labels) or list(SENTIMENT_LABELS)
        validation: list[tuple[str, int]] = []
    else:
        raw_train = _records_for(cfg.kind, Path(cfg.train), cfg.text_field, cfg.label_field)
        names = _label_names(cfg.kind, cfg.labels, (lab for _, lab in raw_train))
        train = _to_index(raw_train, names, str(cfg.train))
        validation = (
            _to_index(_records_for(cfg.kind, Path(cfg.validation), cfg.text_field, cfg.label_field), names, str(cfg.validation))
            if cfg.validation
            else []
        )
        test = (
            _to_index(_records_for(cfg.kind, Path(cfg.test), cfg.text_field, cfg.label_field), names, str(cfg.test))
            if cfg.test
            else []
        )
    rng = random.Random(seed)
    if not validation:
        rng.shuffle(train)
        n_val = max(1, int(len(train) * cfg.val_fraction))
        validation, train = train[:n_val], train[n_val:]
    if cfg.max_train:
        train = train[: cfg.max_train]
    if cfg.max_eval:
        validation, test = validation[: cfg.max_eval], test[: cfg.max_eval]
    if not train:
        raise DataError("the classification training split is empty; point finetune.classify.train at labelled data")
    if not validation:
        raise DataError("the classification validation split is empty; give finetune.classify.validation or more training data")
    return ClassificationData(labels=names, train=train, validation=validation, test=test)


# ----------------------------------------------------------------------------
# Instruction data


def to_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """A chat from an Alpaca record (instruction/input/output) or a `messages` record."""
    if "messages" in record:
        msgs = [{"role": m["role"], "content": _nfc(m["content"])} for m in record["messages"]]
        if not msgs or msgs[-1]["role"] != "assistant":
            raise DataError("a chat example must end with an assistant message")
        return msgs
    instruction = _nfc(record.get("instruction"))
    extra = _nfc(record.get("input"))
    output = _nfc(record.get("output"))
    if not instruction or not output:
        raise DataError("an instruction example needs non-empty 'instruction' and 'output' fields")
    user = f"{instruction}\n\n{extra}" if extra else instruction
    return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


def load_sft(cfg: Any, seed: int = 0) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """Train and validation chats of the `sft` task."""
    path = assets_dir() / "instructions.jsonl" if cfg.kind == "embedded" else Path(cfg.train)
    rows = _read_records(path)
    chats, skipped = [], 0
    for row in rows:
        try:
            chats.append(to_messages(row))
        except (DataError, KeyError, TypeError):
            skipped += 1
    if not chats:
        raise DataError(f"{path}: no usable instruction examples ({skipped} skipped); expected instruction/input/output or messages")
    if cfg.validation:
        val = [to_messages(r) for r in _read_records(Path(cfg.validation))]
    else:
        random.Random(seed).shuffle(chats)
        n_val = max(1, int(len(chats) * cfg.val_fraction))
        val, chats = chats[:n_val], chats[n_val:]
    if cfg.max_train:
        chats = chats[: cfg.max_train]
    if not chats or not val:
        raise DataError(f"{path}: too few instruction examples to hold out a validation split")
    return chats, val


# ----------------------------------------------------------------------------
# Encoding


def encode_classification(tokenizer: Any, examples: list[tuple[str, int]], seq_len: int) -> list[dict[str, Any]]:
    """Token ids (with EOS as the pooled last token) and label per example."""
    out = []
    eos = tokenizer.eos_token_id
    for text, label in examples:
        ids = tokenizer.encode(text, add_special_tokens=False)[: seq_len - 1]
        if eos is not None:
            ids = ids + [eos]  # the last token sees the whole text; pooling reads it
        out.append({"input_ids": ids, "label": label})
    return out


def encode_sft(tokenizer: Any, chats: list[list[dict[str, str]]], seq_len: int) -> list[dict[str, Any]]:
    """Token ids and labels with the loss on assistant tokens only (prompt tokens are -100)."""
    out = []
    for chat in chats:
        full = tokenizer.apply_chat_template(chat, tokenize=False)
        prompt = tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)
        if not full.startswith(prompt):
            raise DataError("the tokenizer's chat template does not render the prompt as a prefix of the chat")
        p_ids = tokenizer.encode(prompt, add_special_tokens=False)
        a_ids = tokenizer.encode(full[len(prompt):], add_special_tokens=False)
        ids = (p_ids + a_ids)[:seq_len]
        labels = ([-100] * len(p_ids) + a_ids)[:seq_len]
        if all(v == -100 for v in labels):
            continue  # the answer was cut off entirely: nothing to learn from
        out.append({"input_ids": ids, "labels": labels})
    return out
