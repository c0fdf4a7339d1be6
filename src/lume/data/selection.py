"""Seeded, task-stratified document subsets and held-out non-members, in two parts: the tuning
documents a sweep chooses settings on, and the test documents a study reports."""

from __future__ import annotations

import random
from dataclasses import dataclass

from lume.data.records import TASKS, Document
from lume.errors import LumeError

DOCUMENT_PARTS = ("test", "tuning")


@dataclass
class Selection:
    """Documents chosen for use (by split) and documents held out from all training; `tuning`:
    those of them that form the tuning part (None: every document is a test document)."""

    chosen: list[Document]
    held_out: list[Document]
    tuning: Selection | None = None

    def split(self, name: str) -> list[Document]:
        return [d for d in self.chosen if d.split == name]

    def part(self, name: str) -> Selection:
        """The tuning part, or the test part: every document not in the tuning part."""
        if name == "tuning":
            if self.tuning is None:
                raise LumeError("the target has no tuning documents (a lume target built with tuning_per_task above "
                                "0 has them; a released target's are the SemEval public folds, from the data "
                                "folder's semeval25/ files): tuning on its test documents would report what was "
                                "tuned on")
            return self.tuning
        if name != "test":
            raise LumeError(f"unknown part {name!r} (choose from {', '.join(DOCUMENT_PARTS)})")
        if self.tuning is None:
            return self
        chosen = {(d.split, d.doc_id) for d in self.tuning.chosen}
        held_out = {d.doc_id for d in self.tuning.held_out}
        return Selection([d for d in self.chosen if (d.split, d.doc_id) not in chosen],
                         [d for d in self.held_out if d.doc_id not in held_out])


def _shuffled(documents: list[Document], seed: int, salt: str) -> list[Document]:
    ordered = sorted(documents, key=lambda d: d.doc_id)
    random.Random(f"{seed}:{salt}").shuffle(ordered)
    return ordered


def select_documents(documents: list[Document], per_task: int | None = None, held_out_per_task: int = 0,
                     seed: int = 0, tuning_per_task: int = 0, excluded: frozenset[str] = frozenset()) -> Selection:
    """Pick whole documents, stratified by task (and by split for the chosen ones).

    For each task, `held_out_per_task` documents are set aside first (drawn from all its
    documents, so the held-out set looks like the rest); then `per_task` documents per split
    are chosen from what remains (all of them when None). With `tuning_per_task` (and
    `per_task` set), the next that many documents per task (held out) and per task and split
    (chosen) form the tuning part; the rest are the test part. Documents whose id is `excluded`
    are never chosen nor held out. The result depends only on the documents, the seed and the
    excluded ids, never on file order.
    """
    chosen, held_out, tuning, tuning_held_out = [], [], [], []
    for task in TASKS:
        pool = _shuffled([d for d in documents if d.task == task and d.doc_id not in excluded], seed,
                         f"held-out:{task}")
        held_out.extend(pool[:held_out_per_task])
        tuning_held_out.extend(pool[held_out_per_task:held_out_per_task + tuning_per_task])
        remaining = pool[held_out_per_task + tuning_per_task:]
        for split in sorted({d.split or "" for d in remaining}):
            candidates = _shuffled([d for d in remaining if (d.split or "") == split], seed,
                                   f"{task}:{split}")
            chosen.extend(candidates if per_task is None else candidates[:per_task])
            if tuning_per_task and per_task is not None:
                tuning.extend(candidates[per_task:per_task + tuning_per_task])
    part = Selection(tuning, tuning_held_out) if tuning_per_task else None
    return Selection(chosen + tuning, held_out + tuning_held_out, part)
