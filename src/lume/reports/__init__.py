"""Readable tables of evaluation summaries."""

from __future__ import annotations

from rich.table import Table

from lume.metrics import AGGREGATE_ORDER


def number(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def with_interval(value, summary: dict, name: str) -> str:
    """`0.650 [0.612, 0.688]`: the number and its 95 % bootstrap interval, when there is one."""
    bounds = summary.get("intervals", {}).get(name)
    return number(value) + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds and value is not None else "")


def mia_set_label(mia: dict) -> str:
    name = mia.get("set") or "SemEval"  # summaries from before the set was recorded used the SemEval files
    return {"held-out": "trained forget docs vs held-out docs"}.get(name, f"{name} files")


def summary_table(summary: dict, title: str | None = None) -> Table:
    """The 12 task numbers, the aggregates and the final score of one evaluation, with 95 % intervals."""
    table = Table("split", "task", "regurgitation (ROUGE-L)", "knowledge (EM)",
                  title=title or f"LUME evaluation of {summary['model']['name']} (95 % bootstrap intervals)")
    scores = summary["scores"]
    for split, task, _ in AGGREGATE_ORDER[::2]:
        table.add_row(split, task, *(with_interval(scores[f"{split}/{task}/{m}"], summary, f"{split}/{task}/{m}")
                                     for m in ("regurgitation", "knowledge")))
    table.add_section()
    table.add_row("task aggregate", "", with_interval(summary["task_aggregate"], summary, "task_aggregate"), "")
    if "mia" in summary:
        mia = summary["mia"]
        table.add_row("MIA score", f"AUC {mia['auc_loss']:.3f}, {mia_set_label(mia)}",
                      with_interval(mia["mia_score"], summary, "mia_score"), "")
    if "mia_semeval" in summary:
        semeval = summary["mia_semeval"]
        table.add_row("MIA on SemEval files (not for this target)", f"AUC {semeval['auc_loss']:.3f}",
                      number(semeval["mia_score"]), "")
    if "mmlu" in summary:
        mmlu = summary["mmlu"]
        limit = mmlu["limit_per_subject"]
        note = f"{mmlu['questions']} q" + (f", {limit}/subject" if limit else "")
        flag = " BELOW 75% OF TARGET" if mmlu["below_threshold"] else ""
        table.add_row("MMLU", note, with_interval(mmlu["accuracy"], summary, "mmlu") + flag, "")
    table.add_row("final", "", with_interval(summary["final"], summary, "final"), "")
    return table


def robustness_rows(results_by_model: dict[str, dict]) -> list[list[str]]:
    """Rows of (model, attack, recovered regurgitation, recovered knowledge, retain change, MMLU change)."""
    rows = []
    for model, results in results_by_model.items():
        for name, result in results["attacks"].items():
            if name == "probe":
                for view, recovered in result["recovered"].items():
                    # containment rescoring concerns answers only: no regurgitation number
                    regurgitation = None if "containment" in view else recovered.get("forget/all/regurgitation")
                    rows.append([model, f"probe: {view}", number(regurgitation),
                                 number(recovered.get("forget/all/knowledge")), "–", "–"])
                continue
            recovered = result["recovered"]
            rows.append([model, name, number(recovered.get("forget/all/regurgitation")),
                         number(recovered.get("forget/all/knowledge")), number(result["retain_change"]),
                         number(result["mmlu_change"])])
    return rows


ROBUSTNESS_HEADER = ["model", "attack", "recovered regurgitation", "recovered knowledge", "retain change", "MMLU change"]


def robustness_table(results_by_model: dict[str, dict]) -> Table:
    table = Table(*ROBUSTNESS_HEADER, title="Robustness: fraction of the forgotten that comes back")
    for row in robustness_rows(results_by_model):
        table.add_row(*row)
    return table
