"""The report's intervals, paired differences and plain statements, on hand-made summaries."""

from lume.metrics.oracle import privleak
from lume.reports.leaderboard import (_privleak, beyond_official, difference, forgetting_finding, membership_finding,
                                     mmlu_rule)
from tests.conftest import model_entry


def entry(label: str, auc: float, auc_replicates: list[float], mmlu: float, mmlu_replicates: list[float],
          below: bool = False, units: str = "same"):
    return model_entry(label, {
        "mia": {"auc_loss": auc, "mia_score": 1 - 2 * abs(auc - 0.5)},
        "mmlu": {"accuracy": mmlu, "below_threshold": below},
        "bootstrap": {"units": units, "replicates": {"mia_auc": auc_replicates, "mmlu": mmlu_replicates}}})


def test_differences_are_paired_and_starred_only_when_the_interval_excludes_zero():
    target = entry("target", 1.0, [1.0, 0.9, 1.0, 0.95], 0.4, [0.4, 0.3, 0.5, 0.4])
    moved = entry("a", 0.6, [0.6, 0.5, 0.6, 0.55], 0.4, [0.4, 0.3, 0.5, 0.4])
    noisy = entry("b", 0.98, [1.0, 0.8, 0.9, 1.0], 0.4, [0.4, 0.3, 0.5, 0.4])
    assert difference(moved, target, "mia_auc").endswith("*")
    assert not difference(noisy, target, "mia_auc").endswith("*")
    other_units = entry("c", 0.6, [0.6] * 4, 0.4, [0.4] * 4, units="other documents")
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


def split_entry(label: str, forget: list[float], retain: list[float], aggregate_low: float = 0.5):
    """A summary whose forget and retain means are the replicates' first values."""
    scores = {f"{split}/Task{t}/{kind}": values[0] for split, values in (("forget", forget), ("retain", retain))
              for t in (1, 2, 3) for kind in ("regurgitation", "knowledge")}
    return model_entry(label, {"final": 0.5, "scores": scores, "intervals": {"task_aggregate": [aggregate_low, 1]},
                               "bootstrap": {"units": "same", "replicates": {"forget/mean": forget,
                                                                             "retain/mean": retain}}})


def test_the_forgetting_finding_names_who_forgets_and_keeps_beyond_the_intervals():
    target = split_entry("target", [0.9, 0.88, 0.92, 0.9], [0.95, 0.93, 0.97, 0.95])
    keeper = split_entry("keeper", [0.1, 0.05, 0.15, 0.1], [0.9, 0.88, 0.92, 0.9])  # retain −0.05 ± 0.02
    damager = split_entry("damager", [0.0, 0.0, 0.0, 0.0], [0.85, 0.7, 0.95, 0.85])  # retain interval reaches −0.2
    idle = split_entry("idle", [0.9, 0.8, 1.0, 0.9], [0.95, 0.93, 0.97, 0.95])  # forget interval holds 0
    noisy = split_entry("noisy", [0.1, 0.05, 0.15, 0.1], [0.9, 0.88, 0.92, 0.9], aggregate_low=0.0)
    line = forgetting_finding([target, keeper, damager, idle, noisy], target)[1]
    assert "forgets and keeps: keeper;" in line
    assert "forgets, damages: damager;" in line and "does not forget: idle;" in line
    assert "task aggregate not beyond 0: noisy " in line


def test_the_oracle_table_compares_every_model_with_the_oracle():
    from lume.metrics.aggregate import AGGREGATE_ORDER

    def model(label, auc, score, losses):
        mia = [{"id": f"d{i}", "set": "held-out", "member": True, "loss": loss} for i, loss in enumerate(losses)]
        return model_entry(label, {"mia": {"auc_loss": auc}, "scores": {"/".join(k): score for k in AGGREGATE_ORDER}},
                           mia)

    oracle = model("oracle", 0.5, 0.2, [3.0, 3.1, 3.2])
    target = model("target", 1.0, 0.9, [0.1, 0.2, 0.3])
    lines = beyond_official([target, oracle])
    row = next(line for line in lines if line.startswith("| target"))
    assert "+100.0 %" in row and "0.700" in row  # privleak (1 − 0.5) / 0.5; every number 0.7 from the oracle's
    assert row.endswith(f"{2 / 20:.3f} |")  # KS p-value of two separated samples of 3: 2 / C(6, 3)
    assert beyond_official([target]) == []  # no oracle, no table


def test_privleak_against_an_oracle_of_auc_zero_is_shown_undefined_not_a_crash():
    """A tiny oracle can rank every held-out document above every forget one (AUC 0, in the
    point or in a resample): the relative difference is undefined there."""
    assert privleak(0.5, 0.0) is None
    oracle = entry("oracle", 0.0, [0.0, 0.2, 0.1], 0.5, [0.5, 0.5, 0.5])
    model = entry("model", 0.6, [0.6, 0.7, 0.5], 0.5, [0.5, 0.5, 0.5])
    assert _privleak(model, oracle) == "– (oracle AUC 0)"
    oracle = entry("oracle", 0.1, [0.0, 0.2, 0.1], 0.5, [0.5, 0.5, 0.5])  # defined at the point, not in a resample
    assert _privleak(model, oracle) == "+500.0 %"


def test_folders_of_the_same_name_get_labels_that_tell_them_apart(tmp_path):
    from lume.reports.study import distinct_labels

    folders = [tmp_path / "a" / "eval" / "target", tmp_path / "a" / "eval" / "npo", tmp_path / "b" / "eval" / "target",
               tmp_path / "b" / "eval" / "npo"]
    assert distinct_labels(folders) == ["target", "npo", "b/eval/target", "b/eval/npo"]  # the first study's target
    assert distinct_labels(folders[:2]) == ["target", "npo"]


def test_a_rerun_says_where_its_numbers_differ_beyond_their_intervals():
    """The same model in two studies (another machine, another number of processes): a number
    outside the other run's 95 % interval differs; round-off does not."""
    from lume.reports.leaderboard import reruns

    def summary(final: float, span: float) -> dict:
        return {"final": final, "intervals": {"final": [final - span, final + span]}}

    models = [model_entry("npo", summary(0.5, 0.05)), model_entry("kl", summary(0.5, 0.1)),
              model_entry("gd", summary(0.5, 0.05)), model_entry("target", summary(0.4, 0.05)),
              model_entry("b/eval/npo", summary(0.58, 0.1)), model_entry("b/eval/kl", summary(0.55, 0.1)),
              model_entry("b/eval/gd", summary(0.5 + 1e-6, 0.05))]
    rows = {line.split(" | ")[0].strip("| "): line for line in reruns(models) if "| final |" in line}
    assert set(rows) == {"b/eval/npo", "b/eval/kl", "b/eval/gd"}  # the target ran once
    assert rows["b/eval/npo"].endswith("| +0.080 | differs |")  # 0.58 is outside the first's [0.45, 0.55]
    assert rows["b/eval/kl"].endswith("| +0.050 | within its interval |")
    assert rows["b/eval/gd"].endswith("| +0.000 | within its interval |")  # round-off
    assert "| b/eval/gd | task aggregate | – | – | – | not measured |" in reruns(models)
    assert reruns(models[:4]) == []  # no model appears twice: no section


def test_the_report_says_how_each_model_was_made():
    from lume.reports.leaderboard import provenance

    entry = model_entry("npo", {"model": {"fingerprint": "0123456789abcdef", "device": "cpu", "dtype": "float32"},
                                "data": {"fingerprint": "fedcba9876543210"},
                                "versions": {"torch": "2.13.0", "transformers": "5.25.0", "python": "3.11"}},
                        training={"num_processes": 2, "device": "cpu", "precision": {"mixed_precision": "bf16"},
                                  "config": {"training": {"seed": 3}}})
    row = provenance([entry])[-1]
    assert row == ("| npo | 0123456789ab | fedcba987654 | 2 × cpu, bf16, seed 3 | cpu, float32 | "
                   "torch 2.13.0 transformers 5.25.0 |")


def test_the_report_says_where_mmlu_is_at_chance_and_gives_the_general_text_difference():
    from lume.metrics import AGGREGATE_ORDER
    from lume.reports.leaderboard import markdown

    def entry(label, mmlu_interval, nll):
        scores = {"/".join(k): 0.5 for k in AGGREGATE_ORDER}
        return model_entry(label, {"final": 0.3, "scores": scores, "mmlu": {"accuracy": 0.26},
                                   "general": {"nll": nll, "documents": 2, "tokens": 10},
                                   "intervals": {"mmlu": mmlu_interval, "general_nll": [nll - 0.1, nll + 0.1]},
                                   "bootstrap": {"seed": 0, "resamples": 3, "confidence": 0.95, "units": "u",
                                                 "replicates": {"final": [0.3, 0.3, 0.3],
                                                                "general_nll": [nll, nll + 0.1, nll + 0.2]}}})

    text = markdown([entry("target", [0.30, 0.40], 2.0), entry("ga", [0.20, 0.32], 3.0)])
    assert "MMLU at chance: the 95 % interval of ga contains 0.25" in text
    differences = text[text.index("## Differences"):].splitlines()
    header, row = (next(line for line in differences if line.startswith(start)) for start in ("| model", "| ga |"))
    assert header.split(" | ")[3] == "general NLL − target" and row.split(" | ")[3] == "+1.000 [+1.000, +1.000] *"


def test_every_pair_of_the_best_methods_is_compared_on_the_final_score():
    from lume.metrics import AGGREGATE_ORDER
    from lume.reports.leaderboard import top_pairs

    def entry(label, finals):
        return model_entry(label, {"final": finals[0], "scores": {"/".join(k): 0.5 for k in AGGREGATE_ORDER},
                                   "bootstrap": {"seed": 0, "resamples": 3, "confidence": 0.95, "units": "u",
                                                 "replicates": {"final": finals}}})

    models = [entry("target", [0.1, 0.1, 0.1]), entry("a", [0.5, 0.5, 0.5]), entry("b", [0.4, 0.5, 0.6]),
              entry("c", [0.3, 0.31, 0.32]), entry("d", [0.2, 0.2, 0.2])]
    rows = [line for line in top_pairs(models) if line.startswith("| ") and not line.startswith("| method")]
    assert len(rows) == 6  # a-b, a-c, a-d, b-c, b-d, c-d; the target is no method
    assert rows[0].startswith("| a | b | +0.100") and not rows[0].endswith("* |")  # 0.1, 0, -0.1: not beyond 0
    assert rows[1].startswith("| a | c | +0.200") and rows[1].endswith("* |")
    assert top_pairs(models[:3]) == []  # two methods: the Differences table has them
    more = models + [entry("e", [0.15] * 3), entry("f", [0.1, 0.12, 0.14]), entry("g", [0.05, 0.6, 0.05])]
    rows = [line for line in top_pairs(more) if line.startswith("| ") and not line.startswith("| method")]
    assert len(rows) == 10 + 2  # the best five pair by pair, then a against f and g
    assert rows[-2].startswith("| a | f | +0.400") and rows[-2].endswith("* |")
    assert rows[-1].startswith("| a | g | +0.450") and not rows[-1].endswith("* |")  # 0.45, -0.1, 0.45: not beyond 0
    assert "then the best against every other" in "\n".join(top_pairs(more))


def _frontier(axis) -> list[tuple[float, float]]:
    (line,) = [line for line in axis.get_lines() if line.get_label() == "Pareto frontier"]
    return [(round(x, 3), round(y, 3)) for x, y in zip(*line.get_data())]


def test_the_trade_off_figures_ring_the_pareto_frontier_of_the_models_and_of_the_sweeps_trials():
    from lume.reports.figures import forget_vs_retain
    from lume.reports.selection import sweep_pareto

    models = [split_entry("target", [0.9] * 4, [0.95] * 4), split_entry("keeper", [0.1] * 4, [0.9] * 4),
              split_entry("dominated", [0.5] * 4, [0.5] * 4), split_entry("wiper", [0.0] * 4, [0.2] * 4)]
    assert _frontier(forget_vs_retain(models).axes[0]) == [(0.1, 0.95), (0.9, 0.9), (1.0, 0.2)]
    trial = lambda method, number, forget, retain, mmlu: {  # noqa: E731
        "method": method, "trial": number, "state": "COMPLETE", "forget_mean": forget, "retain_mean": retain,
        "mmlu_dev": mmlu}
    sweep = {"trials": [trial("a", 0, 0.2, 0.8, 0.3), trial("a", 1, 0.6, 0.9, 0.5), trial("b", 0, 0.1, 0.5, 0.2)],
             "best": {"a": {"trial": 0}, "b": {"trial": 0}}}
    retain_panel, utility_panel = sweep_pareto(sweep).axes
    assert _frontier(retain_panel) == [(0.4, 0.9), (0.8, 0.8), (0.9, 0.5)]
    assert _frontier(utility_panel) == [(0.4, 0.5), (0.8, 0.3), (0.9, 0.2)]


def test_the_membership_table_says_how_wide_its_widest_auc_interval_is():
    from lume.reports.leaderboard import widest_auc_interval

    narrow = model_entry("narrow", {"intervals": {"mia_auc": [0.9, 1.0], "mia_auc_zlib": [0.0, 1.0]}})
    wide = model_entry("wide", {"intervals": {"mia_auc": [0.4, 0.65]}})
    assert widest_auc_interval([narrow, wide])[1].startswith("The widest loss-attack AUC interval is 0.250 wide (wide)")
    assert widest_auc_interval([model_entry("none", {})]) == []
