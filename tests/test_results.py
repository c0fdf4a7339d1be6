"""The typed results: summary.json read and written unchanged, older and newer files handled in
one line, and the headline keys spelled only where their types are defined."""

import ast
import json
from pathlib import Path

import pytest

import lume
from lume.errors import InputError
from lume.results import SCHEMA_VERSION, EvaluationSummary, ProbeRow, UnlearnReport, read_summary

HEADLINE_KEYS = {"task_aggregate", "mia_score", "accuracy", "selection_score", "forget_mean", "retain_mean",
                 "auc_loss", "mmlu_dev"}
ROOT = Path(lume.__file__).parent


def test_no_headline_key_is_spelled_as_a_string_outside_lume_results():
    """Reports, selection, sweeps and sections read fields; a key string elsewhere is a second,
    unchecked definition of the result's shape."""
    spelled = []
    for path in ROOT.rglob("*.py"):
        if path.name == "results.py":
            continue
        tree = ast.parse(path.read_text())
        exported = {id(n) for a in ast.walk(tree) if isinstance(a, ast.Assign)
                    and any(getattr(t, "id", None) == "__all__" for t in a.targets) for n in ast.walk(a.value)}
        for node in ast.walk(tree):
            if id(node) in exported:  # function names in __all__ (lume.metrics.mia_score)
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in HEADLINE_KEYS:
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "final":
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} ['final']")
    assert not spelled, spelled


def test_the_check_sees_a_spelled_key(tmp_path):
    tree = ast.parse('summary["mmlu"]["accuracy"]')
    assert any(isinstance(n, ast.Constant) and n.value in HEADLINE_KEYS for n in ast.walk(tree))


def _a_summary() -> dict:
    return {"model": {"name": "m", "path": None, "fingerprint": "f", "dtype": "torch.float32", "device": "cpu"},
            "data": {"dir": "d", "source": "lume", "fingerprint": "g", "documents": 2, "items": 4,
                     "target_manifest": True},
            "dtypes": {"generation": "torch.float32"}, "scores": {"forget/Task1/regurgitation": 0.5},
            "task_aggregate": None, "early_stopped_items": 0, "per_task": {},
            "mia": {"members": 2, "non_members": 2, "auc_loss": 0.75, "auc_zlib": 0.5, "auc_min_k_plus_plus": 0.6,
                    "mia_score": 0.5, "set": "held-out",
                    "per_task": {"Task1": {"members": 1, "non_members": 1, "auc_loss": 1.0, "mia_score": 0.0}}},
            "mmlu": {"accuracy": 0.25, "questions": 4, "per_subject": {}, "per_category": {}, "limit_per_subject": 2,
                     "subjects_sampled": None, "shots": 5, "target_mmlu": None, "below_threshold": None},
            "extraction": {"exact_memorisation": {"forget": 0.1}}, "final": None,
            "intervals": {"mia_score": [0.1, 0.9]},
            "bootstrap": {"seed": 0, "resamples": 3, "confidence": 0.95, "units": "u",
                          "replicates": {"mia_score": [0.1, 0.5, 0.9]}},
            "config": {"seed": 0}, "versions": {"python": "3.11"}, "timings": {"total_s": 1.0},
            "files": ["summary.json"]}


def test_a_summary_reads_back_to_the_same_json_with_every_part_typed():
    raw = _a_summary()
    summary = EvaluationSummary.read("summary.json", raw)
    assert summary.to_json() == {**raw, "schema_version": 1}  # a file without a version is version 1
    assert summary.mia.aucs == {"loss": 0.75, "zlib": 0.5, "min_k_plus_plus": 0.6}  # auc_min_k_... not auc_min_k
    assert summary.mia.per_task["Task1"].auc_loss == 1.0 and summary.mmlu_accuracy == 0.25
    assert summary.parts == {"extraction": {"exact_memorisation": {"forget": 0.1}}}
    assert summary.replicates("mia_score") == [0.1, 0.5, 0.9] and summary.interval("mia_score") == [0.1, 0.9]
    fresh = EvaluationSummary.from_json(raw)
    assert fresh.to_json()["schema_version"] == SCHEMA_VERSION


def test_a_summary_without_a_part_leaves_it_out_rather_than_null():
    raw = {k: v for k, v in _a_summary().items() if k not in ("mia", "mmlu", "intervals", "bootstrap")}
    summary = EvaluationSummary.from_json(raw)
    assert summary.mia is None and summary.mia_score is None and summary.replicates("final") is None
    assert not {"mia", "mmlu", "intervals", "bootstrap", "mia_semeval"} & set(summary.to_json())


@pytest.mark.parametrize(("change", "field"), [
    ({"final": "high"}, "final"), ({"mia": {"auc_loss": [1]}}, "mia.auc_loss"), ({"mmlu": 3}, "mmlu"),
    ({"scores": {"forget/Task1/knowledge": True}}, "scores.forget/Task1/knowledge"),
    ({"schema_version": SCHEMA_VERSION + 1}, "schema_version")])
def test_a_damaged_or_newer_summary_is_refused_in_one_line_naming_the_field(tmp_path, change, field):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({**_a_summary(), **change}))
    with pytest.raises(InputError) as caught:
        read_summary(path)
    assert str(path) in str(caught.value) and field in str(caught.value) and "\n" not in str(caught.value)


def test_a_sweep_records_the_chosen_steps_numbers_from_its_probe_row():
    row = ProbeRow(id="step-00000003", step=3, scores={"forget/Task1/knowledge": 0.0}, forget_mean=0.1,
                   retain_mean=0.8, task_aggregate=0.5, mia_auc=0.6, mmlu_dev=0.3, selection_score=0.4, seconds=2.0)
    assert ProbeRow.from_json(row.to_json()) == row
    assert row.chosen_numbers() == {"step": 3, "forget_mean": 0.1, "retain_mean": 0.8, "mia_auc": 0.6,
                                    "mmlu_dev": 0.3, "selection_score": 0.4}
    report = UnlearnReport.from_json({"steps": 3, "probes": [row.to_json()], "selection": {"step": 3}})
    assert report.probes == [row] and report.selection.step == 3
    assert report.to_json() == {"steps": 3, "probes": [row.to_json()], "selection": {"step": 3, "select": None,
                                "rule_met": None, "data": {}, "criterion": None}, "method": None,
                                "method_settings": {}, "config": {}, "model_in": None, "model_in_fingerprint": None,
                                "forget": {}, "retain": {}, "losses": [], "seconds": None}
