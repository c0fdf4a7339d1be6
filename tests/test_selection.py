"""Probes during unlearning and the checkpoint chosen on them."""

import dataclasses
import json

import pytest
import torch

from lume.errors import LumeError
from lume.stages.unlearning import UnlearnConfig, unlearn
from lume.results import ProbeRow
from lume.stages.unlearning.selection import chosen_step, selection_score
from lume.training import TrainingSettings

FAST = TrainingSettings(batch_size=2, learning_rate=1e-3)


def row(step, score, mmlu):
    return ProbeRow(step=step, selection_score=score, mmlu_dev=mmlu)


def test_the_best_step_is_chosen_but_never_below_three_quarters_of_the_starting_mmlu():
    rows = [row(0, 0.2, 0.40), row(5, 0.5, 0.35), row(10, 0.9, 0.29), row(15, 0.4, 0.31)]
    assert chosen_step(rows, "best") == {"step": 5, "select": "best", "rule_met": True}  # 10 scores best, MMLU < 0.30
    assert chosen_step(rows, "last")["step"] == 15
    collapsed = [row(0, 0.2, 0.40), row(5, 0.9, 0.1), row(10, 0.8, 0.2)]
    assert chosen_step(collapsed, "best") == {"step": 10, "select": "best", "rule_met": False}


def test_selection_score_is_the_final_score_formula_on_the_probes():
    probe = ProbeRow(task_aggregate=0.6, mia_auc=0.75, mmlu_dev=0.3)
    assert selection_score(probe) == pytest.approx((0.6 + 0.5 + 0.3) / 3)
    assert selection_score(dataclasses.replace(probe, mia_auc=None)) == pytest.approx((0.6 + 0.3) / 2)


def test_select_best_needs_probes():
    with pytest.raises(LumeError, match="select 'best' chooses among probed steps: set eval_every"):
        UnlearnConfig(select="best")


def test_probes_are_recorded_every_n_steps_and_the_chosen_step_is_the_saved_model(tmp_path, tiny_target, data_dir,
                                                                                   monkeypatch):
    from lume.models import load_model
    from lume.stages.unlearning import selection

    monkeypatch.setattr(selection, "selection_score", lambda probe_row: -probe_row.step)  # step 2 wins
    config = UnlearnConfig(method="npo+gd", steps=4, eval_every=2, select="best", training=FAST, progress=False)
    seen = []
    report = unlearn(tiny_target, tmp_path / "best", config, data=str(data_dir),
                     on_probe=lambda step, probe_row: seen.append(step)).to_json()
    assert [r["step"] for r in report["probes"]] == [0, 2, 4] and seen == [0, 2, 4]
    first = report["probes"][0]
    assert len(first["scores"]) == 12 and 0 <= first["mia_auc"] <= 1 and 0 <= first["mmlu_dev"] <= 1
    assert report["selection"]["step"] == 2
    assert report["selection"]["data"] == {"forget_documents": 3, "retain_documents": 3, "mia_members": 3,
                                           "mia_non_members": 6, "mmlu_dev_questions": 20}
    assert json.loads((tmp_path / "best" / "lume_unlearn.json").read_text())["selection"]["step"] == 2
    assert not (tmp_path / "best" / "selection").exists()
    two_steps = unlearn(tiny_target, tmp_path / "two", UnlearnConfig(method="npo+gd", steps=2, training=FAST,
                                                                     progress=False)).to_json()
    assert "selection" not in two_steps
    chosen = load_model(tmp_path / "best", device="cpu").model.state_dict()
    after_two = load_model(tmp_path / "two", device="cpu").model.state_dict()
    assert all(torch.equal(chosen[k], after_two[k]) for k in chosen)


def test_time_between_steps_is_not_training_time(tmp_path):
    """Probes (and memorisation checks) run between steps: tokens/s counts the training alone."""
    import time

    from lume.training import TrainingRun, train

    model = torch.nn.Linear(2, 1)
    step_loss = lambda m, _step: (m(torch.ones(1, 2)).sum(), {"tokens": 1})  # noqa: E731
    result = train(model, TrainingRun(TrainingSettings(), 2), step_loss, tmp_path / "checkpoints",
                   after_step=lambda _step: time.sleep(0.6), show_progress=False)
    assert result.steps == 2 and result.seconds < 0.6
