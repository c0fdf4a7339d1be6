"""The report's intervals, paired differences and plain statements, on hand-made summaries."""

from lume.reports.leaderboard import difference, membership_finding, mmlu_rule


def entry(label: str, auc: float, auc_replicates: list[float], mmlu: float, mmlu_replicates: list[float],
          below: bool = False) -> dict:
    return {"label": label, "summary": {
        "mia": {"auc_loss": auc, "mia_score": 1 - 2 * abs(auc - 0.5)},
        "mmlu": {"accuracy": mmlu, "below_threshold": below},
        "bootstrap": {"units": "same", "replicates": {"mia_auc": auc_replicates, "mmlu": mmlu_replicates}}}}


def test_differences_are_paired_and_starred_only_when_the_interval_excludes_zero():
    target = entry("target", 1.0, [1.0, 0.9, 1.0, 0.95], 0.4, [0.4, 0.3, 0.5, 0.4])
    moved = entry("a", 0.6, [0.6, 0.5, 0.6, 0.55], 0.4, [0.4, 0.3, 0.5, 0.4])
    noisy = entry("b", 0.98, [1.0, 0.8, 0.9, 1.0], 0.4, [0.4, 0.3, 0.5, 0.4])
    assert difference(moved, target, "mia_auc").endswith("*")
    assert not difference(noisy, target, "mia_auc").endswith("*")
    other_units = entry("c", 0.6, [0.6] * 4, 0.4, [0.4] * 4)
    other_units["summary"]["bootstrap"]["units"] = "other documents"
    assert difference(other_units, target, "mia_auc") == "–"  # never paired across different data
    assert "a moved the MIA AUC" in membership_finding([target, moved, noisy], target)[1]
    assert "no method moved the MIA AUC" in membership_finding([target, noisy], target)[1]


def test_the_mmlu_rule_says_whether_it_holds_significantly():
    target = entry("target", 1.0, [1.0] * 4, 0.40, [0.40, 0.42, 0.38, 0.40])
    far_below = entry("a", 1.0, [1.0] * 4, 0.10, [0.10, 0.12, 0.08, 0.10], below=True)
    just_below = entry("b", 1.0, [1.0] * 4, 0.29, [0.29, 0.35, 0.25, 0.31], below=True)
    assert mmlu_rule(far_below, target) == " ⚠ below 75 % of target (significant)"
    assert mmlu_rule(just_below, target) == " ⚠ below 75 % of target (not significant)"
    assert mmlu_rule(entry("c", 1.0, [1.0] * 4, 0.4, [0.4] * 4), target) == ""
