"""`lume_target.json`: which documents a target model was trained on and which were held out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from lume.data import LumeData, public_fold_documents
from lume.data.records import Document
from lume.data.selection import Selection
from lume.errors import InputError
from lume.files import read_json, write_json_atomic
from lume.outputs import FINISHED_MARKERS, refuse_unfinished

MANIFEST_NAME = FINISHED_MARKERS["memorize"]


@dataclass
class TargetManifest:
    base_model: str
    data_fingerprint: str
    trained: dict[str, list[str]]  # split -> document ids: those it is scored on, all trained but left_out
    held_out: list[str]
    settings: dict = field(default_factory=dict)
    # of the trained documents, those this model never saw: an oracle's forget documents (lume.stages.target)
    left_out: list[str] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    # the tuning part (forget, retain, held_out -> document ids), among the documents above; empty: none
    tuning: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_selection(cls, selection: Selection, **fields) -> TargetManifest:
        part = selection.tuning
        tuning = {**_ids(part), "held_out": [d.doc_id for d in part.held_out]} if part else {}
        return cls(trained=_ids(selection), held_out=[d.doc_id for d in selection.held_out], tuning=tuning,
                   **fields)

    def selection(self, documents: list[Document]) -> Selection:
        """The manifest's documents, looked up in `documents` (in manifest order), with its tuning
        part (`Selection.part` gives either part)."""
        tuning = _looked_up(documents, {k: v for k, v in self.tuning.items() if k != "held_out"},
                            self.tuning.get("held_out", []))
        return _looked_up(documents, self.trained, self.held_out, tuning if self.tuning else None)

    def write(self, model_dir: Path) -> None:
        """The manifest's file (a target without a tuning part writes none: the files of older versions)."""
        fields = asdict(self)
        if not self.tuning:
            del fields["tuning"]
        write_json_atomic(model_dir / MANIFEST_NAME, fields)


def _ids(selection: Selection) -> dict[str, list[str]]:
    return {split: [d.doc_id for d in selection.split(split)] for split in ("forget", "retain")}


def _looked_up(documents: list[Document], trained: dict[str, list[str]], held_out: list[str],
               tuning: Selection | None = None) -> Selection:
    by_key = {(d.split, d.doc_id): d for d in documents}
    by_id = {d.doc_id: d for d in documents}
    chosen = [by_key[(split, doc_id)] for split, ids in trained.items() for doc_id in ids if (split, doc_id) in by_key]
    return Selection(chosen, [by_id[doc_id] for doc_id in held_out if doc_id in by_id], tuning)


def target_selection(manifest: TargetManifest | None, data: LumeData) -> Selection:
    """A target's documents in their parts: a lume target's, from its manifest; a model without one
    (a released target, which memorised the whole release) holds every document of DATA, and the
    SemEval public folds are its tuning part, as the SemEval teams tuned on those and were scored
    on the rest (data of a fold alone has no tuning part). No document is held out: a released
    target's membership is measured on the SemEval MIA files."""
    if manifest is not None:
        return manifest.selection(data.documents)
    public = public_fold_documents(data)
    if not public or len(public) == len(data.documents):
        return Selection(list(data.documents), [])
    return Selection(list(data.documents), [], Selection([d for d in data.documents if d.doc_id in public], []))


def read_manifest(model_dir: str | Path | None) -> TargetManifest | None:
    """The manifest in a model folder, or None when there is none; an unfinished lume output is refused."""
    if model_dir is None:
        return None
    refuse_unfinished(model_dir)
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    fields = read_json(path, what="target manifest")
    try:
        manifest = TargetManifest(**fields)
    except TypeError as error:
        raise InputError(path, f"not a lume target manifest: {error}") from None
    if not (isinstance(manifest.trained, dict) and isinstance(manifest.held_out, list)
            and all(isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in manifest.trained.values())
            and isinstance(manifest.left_out, list) and isinstance(manifest.tuning, dict)
            and all(isinstance(i, str) for i in manifest.held_out + manifest.left_out)):
        raise InputError(path, "not a lume target manifest: trained and held_out must list document ids")
    return manifest
