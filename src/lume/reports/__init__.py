"""Readable tables of evaluation summaries."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from lume.metrics import AGGREGATE_ORDER
from lume.results import AttackResults, EvaluationSummary, Headline, UnlearnReport
from lume.stages.evaluation import SECTIONS
from lume.stages.evaluation.membership_section import mia_set_label
from lume.stages.evaluation.sections import number, with_interval

__all__ = ["ROBUSTNESS_HEADER", "ModelEntry", "mia_set_label", "number", "robustness_rows", "robustness_table",
           "summary_table", "with_interval"]


@dataclass(frozen=True)
class ModelEntry:
    """One evaluated model of a study, as the reports read it."""

    label: str  # its evaluation folder's name: target, oracle or the method's label
    summary: EvaluationSummary
    mia_rows: list[dict]  # its mia.jsonl (empty when it wrote none)
    training: UnlearnReport | None = None  # its unlearning report (lume_unlearn.json), for unlearned models


def summary_table(summary: EvaluationSummary, title: str | None = None) -> Table:
    """The 12 task numbers, the aggregates and the final score of one evaluation, with 95 % intervals."""
    table = Table("split", "task", "regurgitation (ROUGE-L)", "knowledge (EM)",
                  title=title or f"LUME evaluation of {summary.model.name} (95 % bootstrap intervals)")
    scores = summary.scores
    for split, task, _ in AGGREGATE_ORDER[::2]:
        table.add_row(split, task, *(with_interval(scores[f"{split}/{task}/{m}"], summary, f"{split}/{task}/{m}")
                                     for m in ("regurgitation", "knowledge")))
    table.add_section()
    for section in (cls() for cls in SECTIONS.values()):
        for label, note, value in section.table_rows(summary) if section.present(summary) else []:
            table.add_row(label, note, value, "")
    table.add_row("final", "", with_interval(summary.final, summary, Headline.FINAL), "")
    return table


def robustness_rows(results_by_model: dict[str, AttackResults]) -> list[list[str]]:
    """Rows of (model, attack, recovered regurgitation, recovered knowledge, retain change, MMLU change)."""
    rows = []
    for model, results in results_by_model.items():
        for name, result in results.attacks.items():
            if result.by_view:
                for view, recovered in result.recovered.items():
                    # containment rescoring concerns answers only: no regurgitation number
                    regurgitation = None if "containment" in view else recovered.get("forget/all/regurgitation")
                    rows.append([model, f"{name}: {view}", number(regurgitation),
                                 number(recovered.get("forget/all/knowledge")), "–", "–"])
                continue
            recovered = result.recovered
            rows.append([model, name, number(recovered.get("forget/all/regurgitation")),
                         number(recovered.get("forget/all/knowledge")), number(result.retain_change),
                         number(result.mmlu_change)])
    return rows


ROBUSTNESS_HEADER = ["model", "attack", "recovered regurgitation", "recovered knowledge", "retain change",
                     "MMLU change"]


def robustness_table(results_by_model: dict[str, AttackResults]) -> Table:
    table = Table(*ROBUSTNESS_HEADER, title="Robustness: fraction of the forgotten that comes back")
    for row in robustness_rows(results_by_model):
        table.add_row(*row)
    return table
