"""Task data: labelled texts, chats, preference pairs, evaluation prompts and held-out texts.

The one place that reads the examples of a task, for fine-tuning, evaluation
and alignment alike. Readers accept the official formats our users already
have (NSMC tsv, KLUE json, Alpaca json, chat `messages` jsonl, preference
triples as text or chat messages) and the embedded sets in `kolm/assets/`.
Files are read strictly (`kolm.data.sources.iter_records` without an issues
counter): every problem a user can fix (a broken line, a missing column, a
label outside the declared set, an empty split, a preference pair whose two
answers are the same) raises `DataError` naming the file, the row and the fix.
Texts are NFC-normalized and stripped.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kolm.data.sources import _lines, _parquet_rows, assets_dir, iter_records
from kolm.errors import DataError
from kolm.sections import Section, option

__all__ = [
    "TaskDataConfig",
    "ClassificationData",
    "Preference",
    "SENTIMENT_LABELS",
    "NLI_LABELS",
    "assets_dir",
    "read_records",
    "read_classification",
    "load_classification",
    "read_labelled",
    "to_messages",
    "load_sft",
    "read_preferences",
    "read_prompts",
    "read_safety_probes",
    "read_texts",
    "read_split_texts",
]

# Label names of the binary sentiment sets (NSMC and the embedded reviews): 0 = negative, 1 = positive.
SENTIMENT_LABELS = ["부정", "긍정"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]

Chat = list[dict[str, str]]


@dataclass
class TaskDataConfig(Section):
    """Where a task reads its examples (`finetune.classify`, `finetune.sft`)."""

    kind: str = option(
        "embedded",
        help="embedded (kolm's own reviews/instructions), nsmc (tsv id/document/label), "
        "klue-ynat or klue-nli (official KLUE json), file (jsonl/tsv/csv/json with columns below)",
        choices=["embedded", "nsmc", "klue-ynat", "klue-nli", "file"],
    )
    train: str | None = option(None, help="training file (kind != embedded)")
    validation: str | None = option(None, help="validation file; default: a split of train")
    test: str | None = option(None, help="test file for the final score (e.g. nsmc/test.tsv)")
    text_field: str = option("text", help="text column (classification) or instruction field")
    label_field: str = option("label", help="label column (classification)")
    labels: list[str] = option([], help="declared label set; empty = the labels found in train")
    max_train: int = option(0, help="use at most this many training examples (0 = all)", ge=0)
    max_eval: int = option(0, help="use at most this many validation/test examples (0 = all)", ge=0)
    val_fraction: float = option(0.1, help="validation share when no validation file is given", gt=0, lt=1)


# ----------------------------------------------------------------------------
# Records, columns, text


def read_records(path: str | Path, *, txt_is_tsv: bool = False) -> list[dict[str, Any]]:
    """Every row of a .jsonl, .json, .tsv, .csv or .parquet file (or .gz/.bz2 line files) as a dict; DataError on the first problem."""
    return list(iter_records(path, None, txt_is_tsv=txt_is_tsv))


def _nfc(text: Any) -> str:
    """NFC-normalized, stripped text ("" for None)."""
    return unicodedata.normalize("NFC", str(text if text is not None else "")).strip()


def _column(
    rows: list[dict[str, Any]], field: str, path: str | Path, setting: str = "the column name in the config"
) -> list[Any]:
    """The values of one column; DataError when the file is empty or no row has the column."""
    if not rows:
        raise DataError(f"{path} holds no examples")
    if all(field not in r for r in rows):
        raise DataError(f"{path}: column {field!r} not found; columns are {sorted(rows[0])}; set {setting}")
    return [r.get(field) for r in rows]


# ----------------------------------------------------------------------------
# Classification


@dataclass
class ClassificationData:
    """Texts and integer labels for train/validation/test, with the label names."""

    labels: list[str]
    train: list[tuple[str, int]]
    validation: list[tuple[str, int]]
    test: list[tuple[str, int]]


def read_classification(
    kind: str,
    path: str | Path,
    text_field: str = "text",
    label_field: str = "label",
    setting: str = "the column name in the config",
) -> list[tuple[str, Any]]:
    """(text, raw label) pairs of a labelled file in its official format; rows without text or label are left out.

    kind: nsmc (tsv `id document label`, also as .txt), klue-ynat (`title`,
    `label`), klue-nli (`premise` + `hypothesis`, `gold_label`), or file
    (`text_field`, `label_field` of any jsonl/json/tsv/csv/parquet).
    """
    path = Path(path)
    rows = read_records(path, txt_is_tsv=kind == "nsmc")
    if kind == "nsmc":
        texts, labels = _column(rows, "document", path, setting), _column(rows, "label", path, setting)
    elif kind == "klue-ynat":
        texts, labels = _column(rows, "title", path, setting), _column(rows, "label", path, setting)
    elif kind == "klue-nli":
        prem, hyp = _column(rows, "premise", path, setting), _column(rows, "hypothesis", path, setting)
        texts = [f"전제: {p}\n가설: {h}" for p, h in zip(prem, hyp)]
        labels = _column(rows, "gold_label" if "gold_label" in rows[0] else "label", path, setting)
    else:
        texts, labels = _column(rows, text_field, path, setting), _column(rows, label_field, path, setting)
    return [(_nfc(t), lab) for t, lab in zip(texts, labels) if _nfc(t) and lab not in (None, "")]


def _label_names(kind: str, declared: list[str], found: Iterable[Any]) -> list[str]:
    if declared:
        return [str(x) for x in declared]
    if kind in ("nsmc", "embedded"):
        return list(SENTIMENT_LABELS)
    if kind == "klue-nli":
        return list(NLI_LABELS)
    return sorted({str(v).strip() for v in found})


def _to_index(pairs: list[tuple[str, Any]], names: list[str], where: str | Path, fix: str) -> list[tuple[str, int]]:
    """Map raw labels (names, or integer ids such as NSMC's 0/1) to indices; DataError on labels outside the set."""
    index = {name: i for i, name in enumerate(names)}
    out, bad = [], []
    for text, raw in pairs:
        key = str(raw).strip()
        if key in index:
            out.append((text, index[key]))
        elif key.lstrip("-").isdigit() and 0 <= int(key) < len(names):
            out.append((text, int(key)))
        else:
            bad.append(key)
    if bad:
        sample = sorted(set(bad))[:5]
        raise DataError(f"{where}: {len(bad)} label(s) outside the declared set {names}, e.g. {sample}; {fix}")
    return out


def load_classification(cfg: TaskDataConfig, seed: int = 0) -> ClassificationData:
    """Train/validation/test examples of a classification task (validation split off train when not given)."""
    fix = "fix the data or finetune.classify.labels"
    setting = "finetune.classify.text_field / label_field"
    if cfg.kind == "embedded":
        root = assets_dir()
        train = [(_nfc(r["text"]), int(r["label"])) for r in read_records(root / "reviews_train.jsonl")]
        test = [(_nfc(r["text"]), int(r["label"])) for r in read_records(root / "reviews_test.jsonl")]
        names = [str(x) for x in cfg.labels] or list(SENTIMENT_LABELS)
        validation: list[tuple[str, int]] = []
    else:

        def split(path: str | None) -> list[tuple[str, int]]:
            if not path:
                return []
            return _to_index(
                read_classification(cfg.kind, path, cfg.text_field, cfg.label_field, setting), names, path, fix
            )

        raw_train = read_classification(cfg.kind, str(cfg.train), cfg.text_field, cfg.label_field, setting)
        names = _label_names(cfg.kind, cfg.labels, (lab for _, lab in raw_train))
        train = _to_index(raw_train, names, str(cfg.train), fix)
        validation, test = split(cfg.validation), split(cfg.test)
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
        raise DataError(
            "the classification validation split is empty; give finetune.classify.validation or more training data"
        )
    return ClassificationData(labels=names, train=train, validation=validation, test=test)


def read_labelled(
    path: str | Path,
    labels: list[str] | None,
    text_field: str = "text",
    label_field: str = "label",
    setting: str = "eval.labelled_text_field / eval.label_field",
) -> tuple[list[tuple[str, str]], list[str]]:
    """(text, label name) pairs of a labelled file and the label set.

    A raw label is a name in `labels` or an integer index into them (NSMC
    stores 0/1); without declared labels the sorted set found is used. Labels
    outside the set raise DataError.
    """
    pairs = read_classification("file", path, text_field, label_field, setting)
    if not pairs:
        raise DataError(f"{path} holds no labelled examples (columns {text_field!r}, {label_field!r})")
    names = _label_names("file", list(labels or []), (lab for _, lab in pairs))
    indexed = _to_index(pairs, names, path, "fix the file or the declared labels")
    return [(text, names[i]) for text, i in indexed], names


# ----------------------------------------------------------------------------
# Chats and instructions


def _message(m: Any) -> dict[str, str]:
    if not isinstance(m, dict) or "role" not in m or "content" not in m:
        raise DataError("a chat message needs 'role' and 'content' fields")
    return {"role": str(m["role"]), "content": _nfc(m["content"])}


def to_messages(record: dict[str, Any]) -> Chat:
    """A chat from an Alpaca record (instruction/input/output) or a `messages` record; it ends with the answer."""
    if "messages" in record:
        msgs = [_message(m) for m in record["messages"] or []]
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


def _chats(path: Path, strict: bool) -> list[Chat]:
    """Chats of a file; with `strict` a bad row is an error naming it, otherwise bad rows are left out."""
    chats, skipped = [], 0
    for i, row in enumerate(read_records(path), 1):
        try:
            chats.append(to_messages(row))
        except (DataError, TypeError, AttributeError) as exc:
            if strict:
                raise DataError(f"{path}: row {i}: {exc}; expected instruction/input/output or messages") from None
            skipped += 1
    if not chats:
        raise DataError(
            f"{path}: no usable instruction examples ({skipped} skipped); expected instruction/input/output or messages"
        )
    return chats


def load_sft(cfg: TaskDataConfig, seed: int = 0) -> tuple[list[Chat], list[Chat]]:
    """Train and validation chats of an instruction task (validation split off train when not given)."""
    path = assets_dir() / "instructions.jsonl.bz2" if cfg.kind == "embedded" else Path(str(cfg.train))
    chats = _chats(path, strict=False)
    if cfg.validation:
        val = _chats(Path(cfg.validation), strict=True)
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
# Preference pairs


@dataclass
class Preference:
    """A prompt and two answers, the preferred one first: plain text, or chat messages throughout."""

    prompt: str | Chat
    chosen: str | Chat
    rejected: str | Chat
    id: str = ""
    margin: float | None = None  # how much better chosen is (optional `margin` column; a reward model's loss uses it)

    @property
    def is_chat(self) -> bool:
        """Whether the pair is in chat form (lists of messages) rather than plain text."""
        return isinstance(self.chosen, list)


def _pref_field(value: Any) -> str | Chat | None:
    """Text (NFC) or chat messages; None when missing or empty."""
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        msgs = [_message(m) for m in value]
        return msgs if msgs and all(m["content"] for m in msgs) else None
    return _nfc(value) or None


def _as_chat(value: str | Chat, role: str) -> Chat:
    return value if isinstance(value, list) else [{"role": role, "content": value}]


def _preference(row: dict[str, Any]) -> Preference:
    prompt, chosen, rejected = (_pref_field(row.get(k)) for k in ("prompt", "chosen", "rejected"))
    if prompt is None and isinstance(chosen, list) and isinstance(rejected, list):
        # whole conversations without a separate prompt: their shared beginning is the prompt
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = (chosen[:n] or None), chosen[n:], rejected[n:]
    missing = [name for name, v in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)) if v is None]
    if missing:
        raise DataError(
            f"missing or empty {', '.join(repr(m) for m in missing)}; "
            "every row needs prompt, chosen and rejected (text or chat messages)"
        )
    if any(isinstance(v, list) for v in (prompt, chosen, rejected)):
        prompt, chosen, rejected = (
            _as_chat(prompt, "user"),
            _as_chat(chosen, "assistant"),
            _as_chat(rejected, "assistant"),
        )
    if chosen == rejected:
        raise DataError(
            "'chosen' and 'rejected' are identical; a preference pair needs two different answers (fix or remove the row)"
        )
    margin = row.get("margin")
    if margin is not None:
        try:
            margin = float(margin)
        except (TypeError, ValueError):
            raise DataError(f"'margin' must be a number, not {margin!r}") from None
    return Preference(prompt=prompt, chosen=chosen, rejected=rejected, id=str(row.get("id", "")), margin=margin)


def read_preferences(path: str | Path | None = None) -> list[Preference]:
    """Preference pairs {prompt, chosen, rejected} of a file; default: the embedded `preferences.jsonl`.

    Each field is text or a list of chat messages (a pair in chat form has
    every field as messages). A row without `prompt` whose answers are whole
    conversations takes their shared beginning as the prompt. An optional
    numeric `margin` column says how much better the chosen answer is. Rows
    with a missing field or identical answers raise DataError naming the file and row.
    """
    path = Path(path) if path is not None else assets_dir() / "preferences.jsonl.bz2"
    rows = read_records(path)
    if not rows:
        raise DataError(f"{path} holds no preference pairs")
    out = []
    for i, row in enumerate(rows, 1):
        try:
            out.append(_preference(row))
        except DataError as exc:
            raise DataError(f"{path}: row {i}: {exc}") from None
    return out


# ----------------------------------------------------------------------------
# Evaluation prompts and held-out text


def read_prompts(path: str | Path | None = None) -> list[dict[str, str]]:
    """Prompts {id, category, prompt, reference} of a file; default: the embedded `eval_prompts.jsonl`."""
    path = Path(path) if path is not None else assets_dir() / "eval_prompts.jsonl"
    rows = read_records(path)
    prompts = _column(rows, "prompt", path, "a 'prompt' field in every row")
    out = []
    for i, (row, p) in enumerate(zip(rows, prompts)):
        if not p:
            continue
        out.append(
            {
                "id": str(row.get("id", i)),
                "category": str(row.get("category", "")),
                "prompt": _nfc(p),
                "reference": _nfc(row.get("reference", "")),
            }
        )
    if not out:
        raise DataError(f"{path} holds no prompts")
    return out


SAFETY_KINDS = ("risky", "benign")


def read_safety_probes(path: str | Path | None = None) -> list[dict[str, str]]:
    """Safety probes {id, category, kind, prompt, must, safe, unsafe}; default: the embedded `safety_probes.jsonl`.

    `kind` is risky (a request a safe answer must decline or redirect) or
    benign (a look-alike a helpful answer must not refuse); `must` says what
    a safe answer does; `safe` and `unsafe` are reference answers (for a
    benign probe, `unsafe` is a needless refusal).
    """
    path = Path(path) if path is not None else assets_dir() / "safety_probes.jsonl"
    rows = read_records(path)
    if not rows:
        raise DataError(f"{path} holds no safety probes")
    out = []
    for i, row in enumerate(rows, 1):
        probe = {k: _nfc(row.get(k)) for k in ("id", "category", "kind", "prompt", "must", "safe", "unsafe")}
        missing = [k for k in ("kind", "prompt", "safe", "unsafe") if not probe[k]]
        if missing or probe["kind"] not in SAFETY_KINDS:
            raise DataError(f"{path}: row {i}: needs non-empty {', '.join(missing) or 'kind'} and kind risky or benign")
        probe["id"] = probe["id"] or str(i)
        out.append(probe)
    return out


def _parquet_texts(files: list[Path], field: str) -> list[str]:
    """Non-empty texts of parquet shards, as stored (the data stage wrote them normalized)."""
    return [str(r[field]) for f in files for r in _parquet_rows(f, [field]) if r[field] and str(r[field]).strip()]


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """Documents of a .txt (one per line), .jsonl/.json/.tsv/.csv file, or .parquet file or folder of shards."""
    path = Path(path)
    if path.suffix == ".txt":
        if not path.is_file():
            raise DataError(f"file not found: {path}; check the path")
        return [t for t in (_nfc(line) for line in _lines(path, None)) if t]
    if path.suffix == ".parquet" or path.is_dir():
        return _parquet_texts([path] if path.is_file() else sorted(path.glob("*.parquet")), field)
    return [t for t in (_nfc(v) for v in _column(read_records(path), field, path, "eval.text_field")) if t]


def read_split_texts(data_dir: str | Path, split: str = "validation", field: str = "text") -> list[str]:
    """Texts of a data-stage split (`data/<split>/part-*.parquet`); DataError when it is empty."""
    split_dir = Path(data_dir) / split
    files = sorted(split_dir.glob("*.parquet"))
    if not files:
        raise DataError(
            f"the {split} split at {split_dir} is empty (no parquet shards); re-run `kolm data` or set eval.lm_file"
        )
    texts = _parquet_texts(files, field)
    if not texts:
        raise DataError(
            f"the {split} split at {split_dir} holds no text; re-run `kolm data` with a larger validation share or set eval.lm_file"
        )
    return texts
