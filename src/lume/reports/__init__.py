"""Readable tables of evaluation summaries."""

from __future__ import annotations

from rich.table import Table

from lume.metrics import AGGREGATE_ORDER


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_table(summary: dict, title: str | None = None) -> Table:
    """The 12 task numbers, the aggregates and the final score of one evaluation."""
    table = Table("split", "task", "regurgitation (ROUGE-L)", "knowledge (EM)",
                  title=title or f"LUME evaluation of {summary['model']['name']}")
    for split, task, _ in AGGREGATE_ORDER[::2]:
        scores = summary["scores"]
        table.add_row(split, task, _number(scores[f"{split}/{task}/regurgitation"]),
                      _number(scores[f"{split}/{task}/knowledge"]))
    table.add_section()
    table.add_row("task aggregate", "", _number(summary["task_aggregate"]), "")
    if "mia" in summary:
        mia = summary["mia"]
        table.add_row("MIA score", f"AUC {mia['auc_loss']:.3f}", _number(mia["mia_score"]), "")
    if "mia_held_out" in summary:
        held_out = summary["mia_held_out"]["all"]
        table.add_row("MIA held-out (extra)", f"AUC {held_out['auc_loss']:.3f}", _number(held_out["mia_score"]), "")
    if "mmlu" in summary:
        mmlu = summary["mmlu"]
        limit = mmlu["limit_per_subject"]
        note = f"{mmlu['questions']} q" + (f", {limit}/subject" if limit else "")
        flag = " BELOW 75% OF TARGET" if mmlu["below_threshold"] else ""
        table.add_row("MMLU", note, _number(mmlu["accuracy"]) + flag, "")
    table.add_row("final", "", _number(summary["final"]), "")
    return table


def robustness_rows(results_by_model: dict[str, dict]) -> list[list[str]]:
    """Rows of (model, attack, recovered regurgitation, recovered knowledge, retain change, MMLU change)."""
    rows = []
    for model, results in results_by_model.items():
        for name, result in results["attacks"].items():
            if name == "probe":
                for view, recovered in result["recovered"].items():
                    rows.append([model, f"probe: {view}", _number(recovered.get("forget/all/regurgitation")),
                                 _number(recovered.get("forget/all/knowledge")), "-", "-"])
                continue
            recovered = result["recovered"]
            rows.append([model, name, _number(recovered.get("forget/all/regurgitation")),
                         _number(recovered.get("forget/all/knowledge")), _number(result["retain_change"]),
                         _number(result["mmlu_change"])])
    return rows


ROBUSTNESS_HEADER = ["model", "attack", "recovered regurgitation", "recovered knowledge", "retain change", "MMLU change"]


def robustness_table(results_by_model: dict[str, dict]) -> Table:
    table = Table(*ROBUSTNESS_HEADER, title="Robustness: fraction of the forgotten that comes back")
    for row in robustness_rows(results_by_model):
        table.add_row(*row)
    return table
