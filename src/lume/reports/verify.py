"""`lume verify DIR`: the official numbers of a finished evaluation recomputed from its per-item
files, by the protocol's own definitions (docs/evaluation.md; `rouge_score`, scikit-learn and
the standard library, and nothing of lume's evaluator or metrics), and compared with its
summary.json (read as the typed `EvaluationSummary`). A study folder is verified model by
model. What a report shows can then be checked by anyone holding the folder, without the code
that produced it."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from lume.errors import LumeError
from lume.files import read_jsonl
from lume.results import EvaluationSummary, read_summary

TOLERANCE = 1e-9  # the same sums in another order: float64 round-off only
TASKS, SPLITS, METRICS = ("Task1", "Task2", "Task3"), ("forget", "retain"), ("regurgitation", "knowledge")


@dataclass(frozen=True)
class Check:
    """One official number: as summary.json records it and as recomputed here."""

    name: str
    recorded: float | None
    recomputed: float | None
    where: str = ""  # the first item that differs, for the per-item scores

    @property
    def equal(self) -> bool:
        if self.recorded is None or self.recomputed is None:
            return self.recorded is None and self.recomputed is None
        return math.isclose(self.recorded, self.recomputed, rel_tol=0, abs_tol=TOLERANCE)

    def line(self) -> str:
        shown = lambda v: "none" if v is None else str(v) if isinstance(v, int) else f"{v:.6f}"  # noqa: E731
        verdict = "equal" if self.equal else "DIFFERS"
        return f"{verdict:8} {self.name}: summary {shown(self.recorded)}, recomputed {shown(self.recomputed)}" \
               + (f" ({self.where})" if self.where else "")


def item_score(item: dict, scorer) -> float:
    """The protocol's per-item score: ROUGE-L recall for sc items, exact match for qa items (kind from the id)."""
    if item["id"][:-1].endswith("sc"):
        return scorer.score(target=item["output"], prediction=item["generation"])["rougeL"].recall
    return float(item["output"].strip().lower() == item["generation"].strip().lower())


def _probe_checks(items: list[dict], summary: EvaluationSummary) -> tuple[list[Check], float]:
    """Each item's score, the 12 means and their harmonic mean (the task aggregate)."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"], use_stemmer=True)
    scores = {item["id"]: item_score(item, scorer) for item in items}
    wrong = [i["id"] for i in items if abs(scores[i["id"]] - i["score"]) > TOLERANCE]
    checks = [Check("items scored as recorded", len(items), len(items) - len(wrong),
                    f"the first that differs: {wrong[0]}" if wrong else "")]
    twelve = []
    for split in SPLITS:
        for task in TASKS:
            for metric in METRICS:
                kind = "sc" if metric == "regurgitation" else "qa"
                values = [scores[i["id"]] for i in items if (i["split"], i["task"]) == (split, task)
                          and i["id"][:-1].endswith(kind)]
                mean = statistics.fmean(values) if values else None
                name = f"{split}/{task}/{metric}"
                checks.append(Check(name, summary.scores.get(name), mean))
                twelve.append(None if mean is None else (1 - mean if split == "forget" else mean))
    aggregate = statistics.harmonic_mean(twelve) if None not in twelve else None
    checks.append(Check("task aggregate", summary.task_aggregate, aggregate))
    return checks, aggregate


def _mia_checks(rows: list[dict], summary: EvaluationSummary) -> tuple[list[Check], float | None]:
    """The loss attack's AUC (roc_curve on −loss, members 1) and 1 − 2·|AUC − 0.5|."""
    from sklearn.metrics import auc, roc_curve

    if summary.mia is None:
        return [], None
    scored = summary.mia.set or ""  # held-out, or semeval-final / semeval-validation
    rows = [row for row in rows if row.get("set") == ("semeval" if scored.startswith("semeval") else scored)]
    if not rows:
        return [], None
    fpr, tpr, _ = roc_curve([int(row["member"]) for row in rows], [-row["loss"] for row in rows])
    area = auc(fpr, tpr)
    score = 1 - 2 * abs(area - 0.5)
    return [Check("MIA AUC (loss)", summary.mia.auc_loss, area),
            Check("MIA score", summary.mia.mia_score, score)], score


def _mmlu_checks(rows: list[dict], summary: EvaluationSummary) -> tuple[list[Check], float | None]:
    """Each question's prediction, the argmax of its letter logits, against its answer; the micro-average."""
    if not rows or summary.mmlu is None:
        return [], None
    letters = "ABCD"
    correct = [letters[max(range(4), key=row["letter_logits"].__getitem__)] == row["answer"] for row in rows]
    accuracy = statistics.fmean(correct)
    return [Check("MMLU accuracy", summary.mmlu.accuracy, accuracy)], accuracy


def verify_evaluation(folder: str | Path) -> list[Check]:
    """Every official number of the evaluation in FOLDER, recorded and recomputed."""
    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise LumeError(f"{folder}: no summary.json (not a finished evaluation)")
    summary = read_summary(summary_path)
    read = lambda name: read_jsonl(folder / name, "per-item file") if (folder / name).is_file() else []  # noqa: E731
    checks, aggregate = _probe_checks(read("items.jsonl"), summary)
    mia, mia_score = _mia_checks(read("mia.jsonl"), summary)
    mmlu, accuracy = _mmlu_checks(read("mmlu.jsonl"), summary)
    parts = [aggregate, mia_score, accuracy]
    final = statistics.fmean(parts) if None not in parts else None
    return [*checks, *mia, *mmlu, Check("final score", summary.final, final)]


def evaluations(folder: str | Path) -> list[Path]:
    """The evaluations in FOLDER: itself, or a study's (FOLDER/eval/*), in name order."""
    folder = Path(folder)
    if (folder / "summary.json").is_file():
        return [folder]
    found = sorted(p.parent for p in (folder / "eval").glob("*/summary.json"))
    if not found:
        raise LumeError(f"{folder}: neither an evaluation (summary.json) nor a study (eval/*/summary.json)")
    return found
