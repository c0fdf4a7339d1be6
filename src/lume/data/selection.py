"""Seeded, task-stratified document subsets and held-out non-members."""

from __future__ import annotations

import random
from dataclasses import dataclass

from lume.data.records import TASKS, Document


@dataclass
class Selection:
    """Documents chosen for use (by split) and documents held out from all training."""

    chosen: list[Document]
    held_out: list[Document]

    def split(self, name: str) -> list[Document]:
        return [d for d in self.chosen if d.split == name]


def _shuffled(documents: list[Document], seed: int, salt: str) -> list[Document]:
    ordered = sorted(documents, key=lambda d: d.doc_id)
    random.Random(f"{seed}:{salt}").shuffle(ordered)
    return ordered


def select_documents(documents: list[Document], per_task: int | None = None,
                     held_out_per_task: int = 0, seed: int = 0) -> Selection:
    """Pick whole documents, stratified by task (and by split for the chosen ones).

    For each task, `held_out_per_task` documents are set aside first (drawn from all its
    documents, so the held-out set looks like the rest); then `per_task` documents per split
    are chosen from what remains (all of them when None). The result depends only on the
    documents and the seed, never on file order.
    """
    chosen: list[Document] = []
    held_out: list[Document] = []
    for task in TASKS:
        pool = _shuffled([d for d in documents if d.task == task], seed, f"held-out:{task}")
        held_out.extend(pool[:held_out_per_task])
        remaining = pool[held_out_per_task:]
        for split in sorted({d.split or "" for d in remaining}):
            candidates = _shuffled([d for d in remaining if (d.split or "") == split], seed,
                                   f"{task}:{split}")
            chosen.extend(candidates if per_task is None else candidates[:per_task])
    return Selection(chosen, held_out)
