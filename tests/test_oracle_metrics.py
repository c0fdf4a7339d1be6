"""The metrics against the retrained oracle, each on a hand case computed from its formula."""

import math

import pytest

from lume.metrics.aggregate import AGGREGATE_ORDER
from lume.metrics.oracle import forget_losses, forget_quality, privleak, task_distances


def test_privleak_is_the_relative_auc_difference_in_percent():
    assert privleak(0.8, 0.5) == pytest.approx(60.0)
    assert privleak(0.5, 0.5) == 0.0
    assert privleak(0.25, 0.5) == pytest.approx(-50.0)


def test_the_distance_per_task_is_the_mean_absolute_difference_of_its_four_numbers():
    oracle = {"/".join(k): 0.5 for k in AGGREGATE_ORDER}
    model = dict(oracle, **{"forget/Task1/regurgitation": 0.9, "retain/Task1/knowledge": 0.1,
                            "forget/Task3/knowledge": 0.7})
    assert task_distances(model, oracle) == pytest.approx({"Task1": (0.4 + 0.4) / 4, "Task2": 0.0, "Task3": 0.2 / 4})


def test_forget_quality_is_the_ks_p_value():
    assert forget_quality([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    # wholly separated samples of 12: D = 1, whose exact two-sided p-value is 2 / C(24, 12)
    assert forget_quality(list(range(12)), list(range(12, 24))) == pytest.approx(2 / math.comb(24, 12))


def test_forget_losses_are_the_held_out_sets_members():
    rows = [{"id": "a", "set": "held-out", "member": True, "loss": 1.5},
            {"id": "b", "set": "held-out", "member": False, "loss": 3.0},
            {"id": "c", "set": "semeval", "member": True, "loss": 2.0}]
    assert forget_losses(rows) == {"a": 1.5}
