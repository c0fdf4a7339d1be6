"""AltPO, alternate preference optimisation (Mekala et al., 2025, "Alternate Preference
Optimization for Unlearning Factual Knowledge in Large Language Models", COLING): DPO that
prefers a plausible alternate answer a over the forget answer y, so that forgetting has a
positive target (an in-domain answer) rather than only a push away:

    L = (2/β) · mean_F −log σ(β · [(log π_θ(a|x) − log π_ref(a|x)) − (log π_θ(y|x) − log π_ref(y|x))])
        + α · NLL_θ(R)

log π summed over answer tokens; both reference terms are fixed, so they are computed once
before training. The authors generate the alternates with an instruction-tuned model asked to
change the answer's facts; lume, which runs offline, takes by default the answer of another
forget row of the same task and kind (the next one in id order, so a birth date's alternate is
another person's birth date, a story's continuation another story's), or reads them from
`alternates_file` (JSON lines `{"id": ..., "alternate": ...}`, one row per forget id).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lume.config import check_settings, setting
from lume.data.loading import jsonl_rows
from lume.errors import InputError, LumeError
from lume.stages.unlearning.methods.base import register
from lume.stages.unlearning.methods.idk import IdkDPO


@dataclass
class AltPOSettings:
    beta: float = setting(0.1, "β, the preference loss's temperature", above=0)
    alpha: float = setting(1.0, "Weight of the retain NLL", at_least=0)
    alternates_file: str | None = setting(None, "JSON lines {\"id\", \"alternate\"}; None = another forget row's "
                                                "answer")

    def __post_init__(self):
        check_settings(self)


def kind_of(record) -> tuple[str, str]:
    """(task, row kind): sc, or the QA row's position qa0 ... qa4 (the same question in every document)."""
    return record.task, record.id[-3:] if record.id[-3:-1] == "qa" else "sc"


def swapped_alternates(records: list) -> dict[str, str]:
    """Each forget row's alternate: the answer of the next row (in id order, wrapping) of its task
    and kind with another answer; failing that, of its kind in another task, then of any row. A
    forget set with a single answer has no alternate to take, which is refused."""
    distinct = sorted({r.id: r for r in records}.values(), key=lambda r: r.id)
    alternates = {}
    for i, record in enumerate(distinct):
        later = [r for r in distinct[i + 1:] + distinct[:i] if r.output != record.output]
        task, kind = kind_of(record)
        found = next((r.output for r in later if kind_of(r) == (task, kind)), None) or \
            next((r.output for r in later if kind_of(r)[1] == kind), None) or next((r.output for r in later), None)
        if found is not None:
            alternates[record.id] = found
        else:
            raise LumeError("altpo: every forget row has the same answer, so there is no alternate to take from "
                            "them; give alternates_file")
    return alternates


def read_alternates(path: Path) -> dict[str, str]:
    """The alternates file: one JSON object a line with `id` and `alternate`."""
    if not path.is_file():
        raise LumeError(f"{path}: no such alternates file")
    alternates = {}
    for row, where in jsonl_rows(path):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("alternate"), str):
            raise InputError(path, "expected an object with text fields id and alternate", line=where["line"])
        alternates[row["id"]] = row["alternate"]
    return alternates


@register
class AlternatePreference(IdkDPO):
    name = "altpo"
    Settings = AltPOSettings
    log_name = "altpo"

    def chosen_answers(self, context) -> list[str]:
        records = [example.record for example in context.forget_examples]
        if self.settings.alternates_file is None:
            alternates = swapped_alternates(records)
        else:
            alternates = read_alternates(Path(self.settings.alternates_file))
            missing = [r.id for r in records if r.id not in alternates]
            if missing:
                raise LumeError(f"{self.settings.alternates_file}: no alternate for forget row {missing[0]!r} "
                                f"({len(missing)} missing)")
        return [alternates[record.id] for record in records]

    def scale(self) -> float:
        return 2 / self.settings.beta
