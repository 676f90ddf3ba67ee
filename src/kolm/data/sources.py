"""Document sources: the embedded corpus, local files, named recipes for public Korean sets, HF datasets.

Every reader is a generator of `(id, text)` pairs, so inputs larger than
memory stream through. Problems in the input never vanish silently: lines that
are not UTF-8, broken JSON, rows without the text field and empty files are
counted in a `Counter` (`issues`) that ends up in the curation report, and a
source that yields nothing at all raises a `DataError` naming the fix.

The low-level record reading (`iter_records`: jsonl, json, tsv, csv, parquet)
is shared with the task-data readers of `kolm.data.tasks`, which read the same
formats strictly: without an `issues` counter, the first problem raises a
`DataError` naming the file and the line instead of being counted.
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from kolm.errors import DataError

__all__ = [
    "assets_dir",
    "expand_paths",
    "is_compressed",
    "iter_records",
    "read_file",
    "read_recipe",
    "read_source",
    "read_source_file",
    "source_files",
    "source_name",
]

Doc = tuple[str, str]
_ICONV = "`iconv -f cp949 -t utf-8`"


def assets_dir() -> Path:
    """Folder of the embedded corpus and task sets shipped inside the package (`kolm/assets/`)."""
    import kolm

    return Path(kolm.__file__).parent / "assets"


def expand_paths(path: str) -> list[Path]:
    """A file, every file of a folder (sorted), or a glob pattern -> list of files."""
    p = Path(path).expanduser()
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    if p.is_file():
        return [p]
    matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
    if not matches:
        raise DataError(f"data source not found: {path} (give an existing file, folder or glob)")
    return matches


# ----------------------------------------------------------------------------
# Low-level reading, shared with kolm.data.tasks. `issues=None` means strict:
# the first problem raises a DataError naming the file (and line) and the fix.


# Compressed forms read transparently: gzip, and bzip2 (Korean text ~30% smaller than gzip; Wikipedia dumps).
_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open}


def _uncompressed_name(path: Path) -> tuple[str, bool]:
    """(lower-case file name without a .gz/.bz2 suffix, whether it had one)."""
    name = path.name.lower()
    for ext in _COMPRESSED:
        if name.endswith(ext):
            return name[: -len(ext)], True
    return name, False


def is_compressed(path: str | Path) -> bool:
    """Whether a file is one of the compressed forms read transparently (.gz, .bz2)."""
    return _uncompressed_name(Path(path))[1]


def _lines(path: Path, issues: Counter | None) -> Iterator[str]:
    """Decoded lines of a (possibly gzip/bzip2-compressed) file; lines that are not UTF-8 are counted and skipped."""
    opener = _COMPRESSED.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if n == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")  # UTF-8 BOM
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    if issues is None:
                        raise DataError(
                            f"{path}: line {n} is not UTF-8 text; re-encode the file (e.g. {_ICONV})"
                        ) from None
                    issues[f"{path.name}: lines not valid UTF-8 (skipped; re-encode with {_ICONV})"] += 1
    except (OSError, EOFError) as exc:  # truncated gzip/bzip2, unreadable file
        if issues is None:
            raise DataError(
                f"{path}: cannot be read ({exc.__class__.__name__}: {exc}); check or re-download the file"
            ) from None
        issues[f"{path.name}: read error {exc.__class__.__name__}: {exc} (rest of file skipped)"] += 1


def _jsonl_values(path: Path, issues: Counter | None) -> Iterator[tuple[int, Any]]:
    """(line index, parsed value) of every non-blank line of a JSON-lines file."""
    for i, line in enumerate(_lines(path, issues)):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as exc:
            if issues is None:
                raise DataError(
                    f"{path}: line {i + 1} is not valid JSON ({exc.msg}); fix or remove that line"
                ) from None
            issues[f"{path.name}: broken JSON lines (skipped)"] += 1


def _json_values(path: Path) -> list[Any]:
    """The records of a JSON file: a list, or the first list inside a `{"data": [...]}` style wrapper."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8; re-encode it (e.g. {_ICONV})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); for one record per line name it .jsonl") from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [data])
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, found {type(data).__name__}")
    return data


def _table(path: Path, issues: Counter | None, delimiter: str) -> csv.DictReader:
    """Rows of a tsv/csv file (header first). TSV has no quoting: NSMC reviews contain bare quotes."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    return csv.DictReader(_lines(path, issues), delimiter=delimiter, quoting=quoting)


def _parquet_rows(path: Path, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    missing = [c for c in columns or [] if c not in pf.schema_arrow.names]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; columns are {pf.schema_arrow.names}; set text_field")
    for batch in pf.iter_batches(batch_size=10_000, columns=columns):
        yield from batch.to_pylist()


def _kind(path: Path, txt_is_tsv: bool = False) -> str:
    """Format of a file by its name: jsonl, json, tsv, csv, parquet, txt or ''; line formats may end .gz/.bz2."""
    name, compressed = _uncompressed_name(path)
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".tsv") or (txt_is_tsv and name.endswith(".txt")):
        return "tsv"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".txt", ".text")):
        return "txt"
    if compressed:
        return ""  # .json and .parquet are read whole, uncompressed
    if name.endswith(".json"):
        return "json"
    if name.endswith(".parquet"):
        return "parquet"
    return ""


def iter_records(
    path: str | Path, issues: Counter | None = None, *, txt_is_tsv: bool = False
) -> Iterator[dict[str, Any]]:
    """Rows of a .jsonl, .json, .tsv, .csv or .parquet file (line formats also .gz/.bz2), as dicts.

    With an `issues` counter, bad lines and records that are not objects are
    counted and skipped (the data stage's reading); without one, the first
    problem raises `DataError` naming the file and the line. `txt_is_tsv`
    reads .txt as tab-separated (NSMC ships `ratings_train.txt`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}; check the path")
    kind = _kind(path, txt_is_tsv)
    if kind == "jsonl":
        values: Iterator[tuple[int, Any]] = _jsonl_values(path, issues)
    elif kind == "json":
        values = enumerate(_json_values(path))
    elif kind in ("tsv", "csv"):
        yield from _table(path, issues, "\t" if kind == "tsv" else ",")
        return
    elif kind == "parquet":
        yield from _parquet_rows(path)
        return
    else:
        raise DataError(
            f"{path}: unsupported file type; use .jsonl, .json, .tsv, .csv or .parquet (line formats also .gz/.bz2)"
        )
    for i, value in values:
        if isinstance(value, dict):
            yield value
        elif issues is None:
            raise DataError(
                f"{path}: record {i + 1} is not a JSON object ({type(value).__name__}); each record needs named fields"
            )
        else:
            issues[f"{path.name}: records that are not JSON objects (skipped)"] += 1


# ----------------------------------------------------------------------------
# Documents of one file


def _field(record: Any, name: str, path: Path, issues: Counter) -> str | None:
    if not isinstance(record, dict):
        issues[f"{path.name}: records that are not JSON objects (skipped)"] += 1
        return None
    value = record.get(name)
    if value is None:
        issues[
            f"{path.name}: records without field {name!r} (skipped; keys: {sorted(record)[:8]}; set text_field)"
        ] += 1
        return None
    return str(value)


def _read_jsonl(path: Path, field: str, issues: Counter) -> Iterator[Doc]:
    for i, rec in _jsonl_values(path, issues):
        text = _field(rec, field, path, issues)
        if text is not None:
            yield f"{path.stem}:{rec.get('id', i)}", text


def _read_json(path: Path, field: str, issues: Counter) -> Iterator[Doc]:
    for i, rec in enumerate(_json_values(path)):
        text = _field(rec, field, path, issues)
        if text is not None:
            yield f"{path.stem}:{rec.get('id', rec.get('guid', i))}", text


def _read_table(path: Path, field: str, issues: Counter, delimiter: str) -> Iterator[Doc]:
    reader = _table(path, issues, delimiter)
    if reader.fieldnames is None:
        return
    if field not in reader.fieldnames:
        raise DataError(f"{path}: no column {field!r}; columns are {reader.fieldnames}; set text_field")
    for i, row in enumerate(reader):
        text = row.get(field)
        if text is None:
            issues[f"{path.name}: rows with too few columns (skipped)"] += 1
            continue
        yield f"{path.stem}:{row.get('id') or i}", text


def _read_parquet(path: Path, field: str, issues: Counter) -> Iterator[Doc]:
    for i, row in enumerate(_parquet_rows(path, [field])):
        text = row[field]
        if text is None:
            issues[f"{path.name}: null texts (skipped)"] += 1
        else:
            yield f"{path.stem}:{i}", str(text)


def _read_txt(path: Path, issues: Counter, mode: str) -> Iterator[Doc]:
    if mode == "line":
        for i, line in enumerate(_lines(path, issues)):
            if line.strip():
                yield f"{path.stem}:{i}", line.rstrip("\n")
        return
    block: list[str] = []
    n = 0
    for line in _lines(path, issues):
        if line.strip():
            block.append(line.rstrip("\n"))
        elif block:
            yield f"{path.stem}:{n}", "\n".join(block)
            block, n = [], n + 1
    if block:
        yield f"{path.stem}:{n}", "\n".join(block)


def read_file(path: Path, field: str = "text", issues: Counter | None = None, txt_mode: str = "line") -> Iterator[Doc]:
    """Documents of one file, by extension: .txt, .jsonl, .json, .tsv, .csv, .parquet (line formats also .gz/.bz2)."""
    issues = issues if issues is not None else Counter()
    if path.stat().st_size == 0:
        issues[f"{path.name}: empty file"] += 1
        return
    kind = _kind(path)
    if kind == "jsonl":
        yield from _read_jsonl(path, field, issues)
    elif kind == "json":
        yield from _read_json(path, field, issues)
    elif kind in ("tsv", "csv"):
        yield from _read_table(path, field, issues, "\t" if kind == "tsv" else ",")
    elif kind == "parquet":
        yield from _read_parquet(path, field, issues)
    elif kind == "txt":
        yield from _read_txt(path, issues, txt_mode)
    else:
        raise DataError(
            f"{path}: unknown file type; use .txt, .jsonl, .json, .tsv, .csv or .parquet (line formats also .gz/.bz2)"
        )


# ----------------------------------------------------------------------------
# Named recipes: official formats of public Korean sets

_RECIPE_FIELDS = {
    "klue-nli": ("premise", "hypothesis"),
    "klue-sts": ("sentence1", "sentence2"),
    "klue-ynat": ("title",),
}


def read_recipe(name: str, path: str, issues: Counter | None = None) -> Iterator[Doc]:
    """Documents of a public Korean set in its official format.

    nsmc: tab-separated `id document label` (ratings_train.txt); klue-nli /
    klue-sts / klue-ynat: the official KLUE json (a list of records; NLI yields
    premise and hypothesis, STS both sentences, YNAT the headline); kowiki:
    wikipedia-style records with `text` (jsonl or parquet).
    """
    issues = issues if issues is not None else Counter()
    for path_ in expand_paths(path):
        if name == "nsmc":
            for did, text in _read_table(path_, "document", issues, "\t"):
                if text.strip():
                    yield did, text
        elif name in _RECIPE_FIELDS:
            fields = _RECIPE_FIELDS[name]
            records = iter_records(path_, issues)
            for i, rec in enumerate(records):
                for f in fields:
                    text = _field(rec, f, path_, issues)
                    if text:
                        yield f"{path_.stem}:{rec.get('guid', i)}:{f}", text
        elif name == "kowiki":
            yield from read_file(path_, "text", issues)
        else:
            raise DataError(f"unknown recipe {name!r}")


def _read_hub(src: Any, issues: Counter) -> Iterator[Doc]:
    try:
        import datasets
    except ImportError:
        raise DataError("kind=hub needs the `datasets` package: pip install datasets") from None
    try:
        kwargs = {"data_files": src.data_files} if src.data_files else {}
        ds = datasets.load_dataset(src.path, src.config, split=src.split, streaming=src.streaming, **kwargs)
    except Exception as exc:  # network, unknown name, gated dataset: the user fixes the name or goes online
        raise DataError(
            f"could not load hub dataset {src.path!r} ({exc.__class__.__name__}: {exc}); check the name/config/split and the network"
        ) from None
    for i, rec in enumerate(ds):
        text = rec.get(src.text_field)
        if text is None:
            issues[f"{src.path}: records without field {src.text_field!r} (skipped; keys: {sorted(rec)[:8]})"] += 1
            continue
        yield f"{src.path}:{rec.get('id', i)}", str(text)


def source_name(src: Any) -> str:
    """Short label of a source for the `source` column and the report."""
    if src.kind == "embedded":
        return "embedded"
    if src.kind == "recipe":
        return str(src.recipe)
    return f"{src.kind}:{Path(str(src.path)).name}"


def source_files(src: Any) -> list[Path] | None:
    """Files of one `SourceConfig` in reading order, or None for a hub dataset (read as one stream)."""
    if src.kind == "embedded":
        # Shipped bzip2-compressed to keep the package small; plain .jsonl (or .gz) files added there are read too.
        files = sorted(f for f in (assets_dir() / "corpus").iterdir() if _kind(f) == "jsonl")
        if not files:
            raise DataError(f"the embedded corpus is missing from {assets_dir() / 'corpus'}; reinstall kolm")
        return files
    if src.kind == "file":
        return expand_paths(str(src.path))
    if src.kind == "recipe":
        return expand_paths(str(src.path) if src.path else _default_recipe_path(str(src.recipe)))
    return None


def read_source_file(src: Any, path: Path, issues: Counter) -> Iterator[Doc]:
    """Documents of one file of a source (one of `source_files(src)`), without the `max_docs` cap."""
    if src.kind == "embedded":
        yield from _read_jsonl(path, "text", issues)
    elif src.kind == "recipe":
        yield from read_recipe(str(src.recipe), str(path), issues)
    else:
        yield from read_file(path, src.text_field, issues, src.txt_mode)


def read_source(src: Any, issues: Counter) -> Iterator[Doc]:
    """Documents of one `SourceConfig`, at most `max_docs`."""
    files = source_files(src)
    if files is None:
        gen: Iterator[Doc] = _read_hub(src, issues)
    else:
        gen = (d for f in files for d in read_source_file(src, f, issues))
    for i, doc in enumerate(gen):
        if src.max_docs and i >= src.max_docs:
            break
        yield doc


def _default_recipe_path(name: str) -> str:
    if name == "nsmc":
        return str(Path.cwd() / "../shared/data/nsmc/train.tsv")
    raise DataError(f"data.sources.path: recipe {name!r} needs a path to the downloaded files")
