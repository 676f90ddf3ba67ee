"""KLUE task files in their official formats: STS, NER, MRC and RE, read strictly.

The readers take the files exactly as KLUE publishes them (v1.1):

* STS `klue-sts-v1.1_{train,dev}.json`: a list of `{guid, sentence1, sentence2,
  labels: {label, real-label, binary-label}}`; the score is `label` (0-5),
  the paraphrase flag `binary-label` (label >= 3.0).
* NER `klue-ner-v1.1_{train,dev}.tsv`: sentences separated by blank lines,
  each a `## <id>\\t<sentence>` header then one `character\\tTAG` line per
  character (a space is a character), tags B-/I- of PS, LC, OG, DT, TI, QT or O.
* MRC `klue-mrc-v1.1_{train,dev}.json`: SQuAD-like `{data: [{paragraphs:
  [{context, qas: [{question, guid|id, answers: [{text, answer_start}],
  is_impossible, plausible_answers}]}]}]}`.
* RE `klue-re-v1.1_{train,dev}.json`: a list of `{guid, sentence,
  subject_entity: {word, start_idx, end_idx, type}, object_entity, label}`,
  `end_idx` inclusive.

Every problem a user can fix (the file of another task, a tag outside the BIO
set, entity offsets that do not match the sentence, an answer offset beyond
its context) raises one `DataError` line naming the file, the row and the fix.
Texts are NFC-normalized (offsets are checked after normalizing, which keeps
the length of composed Hangul).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kolm.data.sources import _lines
from kolm.errors import DataError
from kolm.sections import Section, option

__all__ = [
    "KLUE_TASKS",
    "NER_TYPES",
    "NER_TAGS",
    "RE_LABELS",
    "KlueFiles",
    "KlueDataConfig",
    "StsExample",
    "NerSentence",
    "MrcExample",
    "Entity",
    "ReExample",
    "official_file",
    "read_klue_sts",
    "read_klue_ner",
    "read_klue_mrc",
    "read_klue_re",
    "read_klue",
]

KLUE_TASKS = ("klue-sts", "klue-ner", "klue-mrc", "klue-re")
NER_TYPES = ("PS", "LC", "OG", "DT", "TI", "QT")
NER_TAGS = [f"{p}-{t}" for t in NER_TYPES for p in ("B", "I")] + ["O"]
# The 30 relation classes of KLUE-RE, in the order of the official label map.
RE_LABELS = [
    "no_relation",
    "org:dissolved",
    "org:founded",
    "org:place_of_headquarters",
    "org:alternate_names",
    "org:member_of",
    "org:members",
    "org:political/religious_affiliation",
    "org:product",
    "org:founded_by",
    "org:top_members/employees",
    "org:number_of_employees/members",
    "per:date_of_birth",
    "per:date_of_death",
    "per:place_of_birth",
    "per:place_of_death",
    "per:place_of_residence",
    "per:origin",
    "per:employee_of",
    "per:schools_attended",
    "per:alternate_names",
    "per:parents",
    "per:children",
    "per:siblings",
    "per:spouse",
    "per:other_family",
    "per:colleagues",
    "per:product",
    "per:religion",
    "per:title",
]
_SUFFIX = {"klue-sts": "json", "klue-ner": "tsv", "klue-mrc": "json", "klue-re": "json"}
# The fields that give a record's task away, for "this is the file of another task" errors.
_SIGNATURES = {
    "klue-sts": ("sentence1", "sentence2", "labels"),
    "klue-re": ("sentence", "subject_entity", "object_entity"),
    "klue-nli": ("premise", "hypothesis"),
    "klue-ynat": ("title", "label"),
}


@dataclass
class KlueFiles(Section):
    """The files of one KLUE task; empty fields fall back to the official names in `klue.dir`."""

    train: str | None = option(None, help="training file (default: <dir>/klue-<task>-v1.1_train.<ext>)")
    validation: str | None = option(None, help="validation file (default: <dir>/klue-<task>-v1.1_dev.<ext>)")
    test: str | None = option(None, help="test file scored after training (optional)")


@dataclass
class KlueDataConfig(Section):
    """Where the KLUE tasks read their examples (`finetune.klue`), and how long inputs are cut."""

    dir: str | None = option(None, help="folder holding the official KLUE v1.1 files (klue-sts-v1.1_train.json, ...)")
    sts: KlueFiles = option(default_factory=KlueFiles, help="KLUE-STS files")
    ner: KlueFiles = option(default_factory=KlueFiles, help="KLUE-NER files")
    mrc: KlueFiles = option(default_factory=KlueFiles, help="KLUE-MRC files")
    re: KlueFiles = option(default_factory=KlueFiles, help="KLUE-RE files")
    max_train: int = option(0, help="use at most this many training examples (0 = all)", ge=0)
    max_eval: int = option(0, help="use at most this many validation/test examples (0 = all)", ge=0)
    doc_stride: int = option(32, help="MRC: tokens shared by consecutive windows of a long context", ge=0)
    max_answer_tokens: int = option(30, help="MRC: longest answer span considered, in tokens", ge=1)

    def files(self, task: str, split: str) -> Path | None:
        """The file of `task` (klue-sts, ...) for `split` (train, validation, test), or None."""
        short = task.removeprefix("klue-")
        given = getattr(getattr(self, short), split)
        if given:
            return Path(given)
        if self.dir and split != "test":
            return official_file(self.dir, task, split)
        return None


def official_file(folder: str | Path, task: str, split: str) -> Path:
    """`<folder>/klue-<task>-v1.1_<train|dev>.<ext>`: the name KLUE ships each file under."""
    name = "train" if split == "train" else "dev"
    ext = _SUFFIX.get(task, "json")
    return Path(folder) / f"{task}-v1.1_{name}.{ext}"


def _nfc(text: Any) -> str:
    return unicodedata.normalize("NFC", str(text if text is not None else ""))


def _wrong_task(path: Path, record: Any, want: str) -> str:
    """What the record looks like instead, for the error message."""
    if isinstance(record, dict):
        for task, keys in _SIGNATURES.items():
            if task != want and all(k in record for k in keys):
                return f"; it looks like a {task.upper()} file"
        if "paragraphs" in record or "data" in record:
            return "; it looks like a KLUE-MRC file"
    return ""


def _json(path: Path, task: str) -> Any:
    if not path.is_file():
        raise DataError(f"file not found: {path}; check the path (or finetune.klue.dir)")
    if path.suffix == ".tsv":
        raise DataError(f"{path}: a .tsv file, but {task.upper()} reads the official .json; check which file you gave")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; re-encode it (예: iconv -f cp949 -t utf-8)") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); is it the official {task} file?"
        ) from None


def _records(path: Path, task: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records of a list-of-objects KLUE json, each checked to have `keys`."""
    data = _json(path, task)
    if isinstance(data, dict) and isinstance(data.get("data"), list) and task != "klue-mrc":
        data = data["data"]
    if not isinstance(data, list) or not data:
        hint = _wrong_task(path, data, task) if isinstance(data, dict) else ""
        raise DataError(f"{path}: expected a JSON list of {task.upper()} records{hint}")
    for i, rec in enumerate(data, 1):
        missing = [k for k in keys if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise DataError(
                f"{path}: row {i}: not a {task.upper()} record (missing {', '.join(missing)}){_wrong_task(path, rec, task)}"
            )
    return data


# ----------------------------------------------------------------------------
# STS


@dataclass
class StsExample:
    """Two sentences, their similarity (0-5) and whether they are paraphrases (score >= 3.0)."""

    sentence1: str
    sentence2: str
    score: float
    binary: int
    guid: str = ""


def read_klue_sts(path: str | Path) -> list[StsExample]:
    """The pairs of a KLUE-STS json file."""
    path = Path(path)
    out = []
    for i, rec in enumerate(_records(path, "klue-sts", ("sentence1", "sentence2", "labels")), 1):
        labels = rec["labels"]
        try:
            score = float(labels["label"] if isinstance(labels, dict) else labels)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: row {i}: labels.label must be a number from 0 to 5") from None
        if not 0.0 <= score <= 5.0:
            raise DataError(f"{path}: row {i}: similarity {score} is outside 0-5")
        binary = labels.get("binary-label") if isinstance(labels, dict) else None
        binary = int(binary) if binary is not None else int(score >= 3.0)
        s1, s2 = _nfc(rec["sentence1"]).strip(), _nfc(rec["sentence2"]).strip()
        if not s1 or not s2:
            raise DataError(f"{path}: row {i}: empty sentence1 or sentence2")
        out.append(StsExample(s1, s2, score, binary, str(rec.get("guid", i))))
    return out


# ----------------------------------------------------------------------------
# NER


@dataclass
class NerSentence:
    """A sentence as characters with one BIO tag each."""

    id: str
    chars: str
    tags: list[str]


def read_klue_ner(path: str | Path) -> list[NerSentence]:
    """The sentences of a KLUE-NER tsv file (`## id\\tsentence` headers, `char\\tTAG` lines, blank separators)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}; check the path (or finetune.klue.dir)")
    if path.suffix == ".json":
        raise DataError(f"{path}: a .json file, but KLUE-NER reads the official .tsv; check which file you gave")
    valid = set(NER_TAGS)
    out: list[NerSentence] = []
    current: NerSentence | None = None
    for n, raw in enumerate(_lines(path, None), 1):
        line = _nfc(raw.rstrip("\r\n"))
        if not line.strip():
            current = None
            continue
        if line.startswith("##"):
            ident = line[2:].strip().split("\t", 1)[0].strip()
            current = NerSentence(ident or str(len(out) + 1), "", [])
            out.append(current)
            continue
        if current is None:
            hint = " (it looks like JSON)" if line.lstrip().startswith(("{", "[")) else ""
            raise DataError(
                f"{path}: line {n}: a character line before any '## <id>' header; not a KLUE-NER .tsv file{hint}"
            )
        char, tab, tag = line.rpartition("\t")
        char = char or " "  # a space may be written as an empty field
        if not tab or len(char) != 1:
            raise DataError(f"{path}: line {n}: expected one character, a tab and its tag, found {line[:40]!r}")
        tag = tag.strip()
        if tag not in valid:
            raise DataError(f"{path}: line {n}: tag {tag!r} is outside the BIO set ({', '.join(NER_TAGS)})")
        current.chars += char
        current.tags.append(tag)
    out = [s for s in out if s.chars]
    if not out:
        raise DataError(f"{path}: no sentences found; expected '## <id>\\t<sentence>' headers and 'char\\tTAG' lines")
    return out


# ----------------------------------------------------------------------------
# MRC


@dataclass
class MrcExample:
    """A question about a context, its gold answers (empty when unanswerable) as (text, character start)."""

    id: str
    context: str
    question: str
    answers: list[tuple[str, int]]
    is_impossible: bool = False
    plausible: list[tuple[str, int]] = field(default_factory=list)


def _answers(path: Path, where: str, context: str, items: Any, name: str) -> list[tuple[str, int]]:
    out = []
    for a in items or []:
        if not isinstance(a, dict) or "text" not in a or "answer_start" not in a:
            raise DataError(f"{path}: {where}: each of {name} needs 'text' and 'answer_start'")
        text, start = _nfc(a["text"]), a["answer_start"]
        if not isinstance(start, int) or start < 0 or start + len(text) > len(context):
            raise DataError(
                f"{path}: {where}: {name} offset {start} (+{len(text)} characters) lies beyond its context "
                f"of {len(context)} characters"
            )
        if context[start : start + len(text)] != text:
            raise DataError(
                f"{path}: {where}: {name} {text!r} does not match the context at {start} "
                f"({context[start : start + len(text)]!r})"
            )
        out.append((text, start))
    return out


def read_klue_mrc(path: str | Path) -> list[MrcExample]:
    """The questions of a KLUE-MRC json file, with their contexts and answers."""
    path = Path(path)
    data = _json(path, "klue-mrc")
    docs = data.get("data") if isinstance(data, dict) else None
    if not isinstance(docs, list) or not docs:
        first = data[0] if isinstance(data, list) and data else data
        raise DataError(
            f"{path}: expected the SQuAD-like {{'data': [{{'paragraphs': ...}}]}} of KLUE-MRC"
            f"{_wrong_task(path, first, 'klue-mrc')}"
        )
    out: list[MrcExample] = []
    for d, doc in enumerate(docs, 1):
        paragraphs = doc.get("paragraphs") if isinstance(doc, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"{path}: data[{d}]: no 'paragraphs' list{_wrong_task(path, doc, 'klue-mrc')}")
        for p, para in enumerate(paragraphs, 1):
            if not isinstance(para, dict) or "context" not in para or "qas" not in para:
                raise DataError(f"{path}: data[{d}].paragraphs[{p}]: needs 'context' and 'qas'")
            context = _nfc(para["context"])
            for q, qa in enumerate(para["qas"], 1):
                where = f"data[{d}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa, dict) or not str(qa.get("question", "")).strip():
                    raise DataError(f"{path}: {where}: needs a non-empty 'question'")
                impossible = bool(qa.get("is_impossible", False))
                answers = _answers(path, where, context, qa.get("answers"), "answer")
                plausible = _answers(path, where, context, qa.get("plausible_answers"), "plausible answer")
                if not answers and not impossible:
                    raise DataError(f"{path}: {where}: no answers but is_impossible is false")
                if impossible:
                    answers = []
                ident = str(qa.get("guid", qa.get("id", f"{d}-{p}-{q}")))
                out.append(MrcExample(ident, context, _nfc(qa["question"]).strip(), answers, impossible, plausible))
    if not out:
        raise DataError(f"{path}: no questions found")
    return out


# ----------------------------------------------------------------------------
# RE


@dataclass
class Entity:
    """An entity mention: its word, character span [start, end] (end inclusive, as KLUE writes it) and type."""

    word: str
    start: int
    end: int
    type: str


@dataclass
class ReExample:
    """A sentence with a subject and an object entity, and the relation between them."""

    sentence: str
    subject: Entity
    object: Entity
    label: int
    guid: str = ""


def _entity(path: Path, i: int, sentence: str, rec: Any, name: str) -> Entity:
    try:
        word, start, end, kind = _nfc(rec["word"]), int(rec["start_idx"]), int(rec["end_idx"]), str(rec["type"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: row {i}: {name} needs word, start_idx, end_idx and type") from None
    if not 0 <= start <= end < len(sentence) or sentence[start : end + 1] != word:
        raise DataError(
            f"{path}: row {i}: {name} {word!r} does not match the sentence at [{start}, {end}] "
            f"({sentence[start : end + 1]!r}); start_idx and end_idx are character offsets, end inclusive"
        )
    return Entity(word, start, end, kind)


def read_klue_re(path: str | Path, labels: list[str] | None = None) -> list[ReExample]:
    """The relation examples of a KLUE-RE json file; labels outside `labels` (default the official 30) are errors."""
    path = Path(path)
    names = list(labels or RE_LABELS)
    index = {n: k for k, n in enumerate(names)}
    out = []
    for i, rec in enumerate(_records(path, "klue-re", ("sentence", "subject_entity", "object_entity", "label")), 1):
        sentence = _nfc(rec["sentence"])
        subj = _entity(path, i, sentence, rec["subject_entity"], "subject_entity")
        obj = _entity(path, i, sentence, rec["object_entity"], "object_entity")
        label = rec["label"]
        if isinstance(label, int) and 0 <= label < len(names):
            k = label
        elif str(label) in index:
            k = index[str(label)]
        else:
            raise DataError(f"{path}: row {i}: relation {label!r} is not one of the {len(names)} KLUE-RE labels")
        out.append(ReExample(sentence, subj, obj, k, str(rec.get("guid", i))))
    return out


def read_klue(task: str, path: str | Path) -> list[Any]:
    """The examples of `task` (klue-sts, klue-ner, klue-mrc, klue-re) in the file at `path`."""
    readers = {"klue-sts": read_klue_sts, "klue-ner": read_klue_ner, "klue-mrc": read_klue_mrc, "klue-re": read_klue_re}
    if task not in readers:
        raise DataError(f"unknown KLUE task {task!r}; choose one of {', '.join(readers)}")
    return readers[task](path)
