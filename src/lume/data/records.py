"""Typed LUME records and the documents they belong to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

TASKS = ("Task1", "Task2", "Task3")
SPLITS = ("forget", "retain")
Kind = Literal["sc", "qa"]

# The kind is the id's last three characters (`sc1`, `qa0`..`qa4`); the rest is the document
# id, which may itself contain quotes, so it is never parsed any further.
_ID_SUFFIX = re.compile(r"^(?P<doc>.+?)(?P<kind>sc|qa)(?P<index>\d)$", re.DOTALL)


def parse_id(record_id: str) -> tuple[str, Kind, int] | None:
    """Split an id into (document id, kind, index); None when it has no sc/qa suffix."""
    match = _ID_SUFFIX.match(record_id)
    if match is None:
        return None
    return match["doc"], match["kind"], int(match["index"])  # type: ignore[return-value]


@dataclass(frozen=True)
class Record:
    """One probe: a sentence completion (sc) or a question (qa) about one document."""

    id: str
    doc_id: str
    task: str
    kind: Kind
    split: str | None  # "forget" / "retain"; None when the file does not say
    input: str
    output: str
    fold: str | None = None  # SemEval fold ("train" / "validation") when known


def join_document(prompt: str, continuation: str) -> str:
    """The full text of a document from its sc row.

    The organisers' MIA member documents are exactly `input + " " + output` for every one of
    them (the release trims the space at the split point), so the space goes back in.
    """
    if not prompt or not continuation or prompt[-1].isspace() or continuation[0].isspace():
        return prompt + continuation
    return prompt + " " + continuation


@dataclass
class Document:
    """A LUME document: its sentence-completion row and its QA rows."""

    doc_id: str
    task: str
    split: str | None
    sc: Record
    qa: list[Record] = field(default_factory=list)

    @property
    def text(self) -> str:
        return join_document(self.sc.input, self.sc.output)

    @property
    def records(self) -> list[Record]:
        return [self.sc, *self.qa]


@dataclass(frozen=True)
class MIADocument:
    """A document for membership inference, labelled member (1) or non-member (0)."""

    id: str
    text: str
    member: bool
    task: str | None = None


def build_documents(records: list[Record]) -> list[Document]:
    """Group records into documents, in first-appearance order; every document needs its sc row."""
    by_doc: dict[tuple[str | None, str], Document] = {}
    orphans: list[Record] = []
    for record in records:
        if record.kind == "sc":
            by_doc[(record.split, record.doc_id)] = Document(record.doc_id, record.task,
                                                             record.split, record)
    for record in records:
        if record.kind == "qa":
            document = by_doc.get((record.split, record.doc_id))
            if document is None:
                orphans.append(record)
            else:
                document.qa.append(record)
    if orphans:
        raise ValueError(f"QA row {orphans[0].id!r} has no sc row for its document")
    for document in by_doc.values():
        document.qa.sort(key=lambda r: r.id)
    return list(by_doc.values())
