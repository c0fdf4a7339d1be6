"""Read and validate LUME files (release JSONL, SemEval parquet folds, MIA sets).

Every problem is reported as an `InputError` naming the file, the line (JSONL) or row
(parquet, 1-based) and the field, so that a user can open the file and fix it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from lume.data.records import SPLITS, TASKS, MIADocument, Record, parse_id
from lume.errors import InputError

REQUIRED_FIELDS = ("id", "input", "output", "task")
# The longest LUME row is 1,614 characters; a field 60 times longer is a broken file, and
# training on it would try to allocate memory for a sequence no model takes.
MAX_FIELD_CHARS = 100_000


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file (a leading byte-order mark is accepted); bytes that
    are not UTF-8 are reported with their line and byte offset."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise InputError(path, f"cannot read file: {error.strerror or error}") from None
    offset = 0
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise InputError(path, f"not UTF-8 text ({error.reason} at byte offset {offset + error.start})",
                                 line=number) from None
            offset += len(raw)


def jsonl_rows(path: Path) -> Iterator[tuple[dict, dict]]:
    """Yield (row, location) for each non-blank line of a JSONL file."""
    for number, line in text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(path, f"malformed JSON: {error.msg} (column {error.colno})", line=number) from None
        if not isinstance(row, dict):
            raise InputError(path, "expected a JSON object", line=number)
        yield row, {"line": number}


def _parquet_rows(path: Path) -> Iterator[tuple[dict, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(path, f"unreadable parquet: {message}") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield row, {"row": number}


def _rows(path: Path) -> Iterator[tuple[dict, dict]]:
    if not path.exists():
        raise InputError(path, "no such file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file")
    return _parquet_rows(path) if path.suffix == ".parquet" else jsonl_rows(path)


def _split_from_name(path: Path) -> str | None:
    stem = path.stem.split("_")[0]
    return stem if stem in SPLITS else None


def _fold_from_name(path: Path) -> str | None:
    parts = path.stem.split("_")
    return parts[1] if len(parts) == 2 and parts[0] in SPLITS else None


def _check_text_fields(path: Path, row: dict, where: dict) -> None:
    for name in REQUIRED_FIELDS:
        if name not in row or row[name] is None:
            raise InputError(path, "missing", field=name, **where)
        if not isinstance(row[name], str):
            raise InputError(path, f"must be a string, got {type(row[name]).__name__}", field=name, **where)
        if not row[name].strip():
            raise InputError(path, "empty", field=name, **where)
        if len(row[name]) > MAX_FIELD_CHARS:
            raise InputError(path, f"{len(row[name]):,} characters long, over the limit of {MAX_FIELD_CHARS:,}",
                             field=name, **where)


def read_records(path: str | Path, split: str | None = None) -> list[Record]:
    """Read and validate one file of LUME rows (`.jsonl` or `.parquet`).

    The split comes from a `split` field when the file has one, else from `split`, else from
    the file name (`forget*` / `retain*`).
    """
    path = Path(path)
    split = split or _split_from_name(path)
    fold = _fold_from_name(path)
    records: list[Record] = []
    first_seen: dict[str, dict] = {}
    locations: list[dict] = []
    for row, where in _rows(path):
        _check_text_fields(path, row, where)
        if row["task"] not in TASKS:
            raise InputError(path, f"unknown task {row['task']!r} (expected one of "
                             f"{', '.join(TASKS)})", field="task", **where)
        parsed = parse_id(row["id"])
        if parsed is None:
            raise InputError(path, f"id {row['id']!r} ends in neither sc<N> nor qa<N>",
                             field="id", **where)
        if row["id"] in first_seen:
            earlier = ", ".join(f"{k} {v}" for k, v in first_seen[row["id"]].items())
            raise InputError(path, f"duplicate id {row['id']!r} (first at {earlier})",
                             field="id", **where)
        first_seen[row["id"]] = where
        row_split = row.get("split") or split
        if row_split is not None and row_split not in SPLITS:
            raise InputError(path, f"unknown split {row_split!r} (expected forget or retain)",
                             field="split", **where)
        doc_id, kind, _ = parsed
        records.append(Record(row["id"], doc_id, row["task"], kind, row_split, row["input"],
                              row["output"], fold))
        locations.append(where)
    if not records:
        raise InputError(path, "empty file (no rows)")
    documents_with_sc = {(r.split, r.doc_id) for r in records if r.kind == "sc"}
    for record, where in zip(records, locations):
        if record.kind == "qa" and (record.split, record.doc_id) not in documents_with_sc:
            raise InputError(path, f"QA row {record.id!r} has no sc row for its document "
                             f"{record.doc_id!r}", field="id", **where)
    return records


def read_mia_documents(path: str | Path, member: bool, task: str | None = None) -> list[MIADocument]:
    """Read a SemEval MIA file: one JSON object per line with `id` and `document`."""
    path = Path(path)
    documents = []
    for row, where in _rows(path):
        text = row.get("document")
        if not isinstance(text, str) or not text.strip():
            raise InputError(path, "missing or empty", field="document", **where)
        documents.append(MIADocument(str(row.get("id", where)), text, member, task))
    return documents
