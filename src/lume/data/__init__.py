"""The LUME data: records, documents, subsets and the data directory."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lume.data.loading import read_mia_documents, read_records
from lume.data.paths import resolve_data_dir
from lume.data.records import SPLITS, TASKS, Document, MIADocument, Record, build_documents, parse_id
from lume.data.selection import Selection, select_documents
from lume.errors import LumeError

SOURCES = ("lume", "semeval-train", "semeval-validation")

log = logging.getLogger(__name__)


@dataclass
class LumeData:
    """Records of one source (the release, or a SemEval fold), with their documents."""

    data_dir: Path
    source: str
    files: list[Path]
    records: list[Record]
    documents: list[Document] = field(init=False)

    def __post_init__(self):
        self.documents = build_documents(self.records)

    @property
    def fingerprint(self) -> str:
        """sha256 over the source files' bytes (first 16 hex digits)."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(os.fsencode(path.name))
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def counts(self) -> dict:
        """Rows by split, task and kind; documents by split and task."""
        rows = Counter((r.split, r.task, r.kind) for r in self.records)
        docs = Counter((d.split, d.task) for d in self.documents)
        return {"rows": rows, "documents": docs}


def source_files(data_dir: Path, source: str) -> list[Path]:
    if source == "lume":
        return [data_dir / "lume" / f"{split}.jsonl" for split in SPLITS]
    if source in ("semeval-train", "semeval-validation"):
        fold = source.split("-")[1]
        return [data_dir / "semeval25" / f"{split}_{fold}.parquet" for split in SPLITS]
    raise LumeError(f"unknown data source {source!r} (choose from {', '.join(SOURCES)})")


def load(data_dir: str | Path | None = None, source: str = "lume") -> LumeData:
    """Load forget and retain rows of a source from the resolved data directory."""
    root = resolve_data_dir(data_dir)
    files = source_files(root, source)
    records = [record for path in files for record in read_records(path)]
    return LumeData(root, source, files, records)


def loaded(data: str | Path | LumeData | None = None, source: str = "lume") -> LumeData:
    """DATA's records of SOURCE: data already loaded (a study loads its data once and hands it to
    every stage) as it is, else loaded from the folder DATA names (None: the resolved default)."""
    if isinstance(data, LumeData):
        if data.source == source:
            return data
        data = data.data_dir
    return load(data, source)


def warn_overlap(forget: list[Record], retain: list[Record]) -> int:
    """Warn (on stderr) when forget and retain rows share an id or the same prompt and answer."""
    seen = {r.id for r in retain} | {(r.input, r.output) for r in retain}
    shared = [r for r in forget if r.id in seen or (r.input, r.output) in seen]
    if shared:
        log.warning(f"{len(shared)} forget rows also appear in the retain set (same id, or the same input and "
                    f"output), e.g. {shared[0].id!r}; the two sets should not overlap")
    return len(shared)


def public_fold_documents(data: LumeData) -> set[str] | None:
    """The ids of DATA's documents in the SemEval-2025 public folds (train and validation): what
    the teams tuned on. The LUME release holds as many documents again outside them, on which the
    organisers scored the teams' systems. None when DATA's folder lacks the fold files."""
    sources = ("semeval-train", "semeval-validation")
    if not all(path.is_file() for source in sources for path in source_files(data.data_dir, source)):
        return None
    folds = {document.doc_id for source in sources for document in load(data.data_dir, source).documents}
    return {document.doc_id for document in data.documents} & folds


def mia_folder(data_dir: str | Path | None = None, validation: bool = False) -> Path:
    """The folder of the SemEval MIA files (member.jsonl, nonmember.jsonl): final, or validation."""
    folder = resolve_data_dir(data_dir) / "semeval25" / "mia"
    return folder / "validation" if validation else folder


def load_mia(data_dir: str | Path | None = None, validation: bool = False) -> list[MIADocument]:
    """The SemEval MIA documents (final set, or the validation set), members first."""
    folder = mia_folder(data_dir, validation)
    return (read_mia_documents(folder / "member.jsonl", True, "Task3")
            + read_mia_documents(folder / "nonmember.jsonl", False, "Task3"))


__all__ = [
    "SOURCES", "SPLITS", "TASKS", "Document", "LumeData", "MIADocument", "Record", "Selection",
    "build_documents", "load", "load_mia", "loaded", "mia_folder", "parse_id", "public_fold_documents",
    "read_mia_documents", "read_records", "resolve_data_dir", "select_documents", "warn_overlap",
]
