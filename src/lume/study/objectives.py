"""What a sweep ranks its trials on, from each trial's chosen step's probes: the final-score formula
(one objective; pruners stop poor trials early), or several of the protocol's parts at once (a
multi-objective search whose Pareto front is kept: Optuna's multi-objective samplers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from lume.errors import InputError, LumeError
from lume.metrics import mia_score
from lume.results import ProbeRow


@dataclass(frozen=True)
class Objective:
    direction: str  # Optuna's: maximize or minimize
    value: Callable[[ProbeRow], float | None]
    help: str


OBJECTIVES = {
    "final": Objective("maximize", lambda row: row.selection_score, "the final-score formula on the probes"),
    "forget": Objective("minimize", lambda row: row.forget_mean, "the forget probes' mean (lower: more forgotten)"),
    "retain": Objective("maximize", lambda row: row.retain_mean, "the retain probes' mean"),
    "mia": Objective("maximize", lambda row: None if row.mia_auc is None else mia_score(row.mia_auc),
                     "the MIA score of the probes (1 − 2|AUC − 0.5|)"),
    "mmlu": Objective("maximize", lambda row: row.mmlu_dev, "MMLU dev accuracy"),
}
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)  # Optuna's samplers that cannot search several objectives


def check_objectives(objectives, pruner: str, sampler: str, path: Path) -> list[str]:
    """OBJECTIVES: ["final"], or distinct names of the other objectives; several need no pruner
    (Optuna prunes single-objective studies only) and a multi-objective sampler."""
    if not isinstance(objectives, list) or not objectives or len(set(objectives)) != len(objectives) \
            or not set(objectives) <= set(OBJECTIVES):
        raise InputError(path, f"expected a list of distinct objectives from {', '.join(OBJECTIVES)}, got "
                               f"{objectives!r}", field="objectives")
    if len(objectives) > 1:
        if "final" in objectives:
            raise InputError(path, "final already weighs forget, retain, MIA and MMLU: give it alone, or the parts",
                             field="objectives")
        if pruner != "none":
            raise InputError(path, f"pruner {pruner}: Optuna prunes single-objective searches only; give pruner: none "
                                   "with several objectives", field="pruner")
        if sampler in SINGLE_OBJECTIVE_SAMPLERS:
            raise InputError(path, f"sampler {sampler} searches one objective; with several use tpe, nsga2, random, "
                                   "qmc or grid", field="sampler")
    return objectives


def directions(objectives: list[str]) -> list[str]:
    return [OBJECTIVES[name].direction for name in objectives]


def trial_values(row: ProbeRow, objectives: list[str]) -> float | list[float]:
    """The trial's value(s) from its chosen step's probes; an objective the probes lack fails it."""
    values = []
    for name in objectives:
        value = OBJECTIVES[name].value(row)
        if value is None:
            raise LumeError(f"objective {name}: the probes give no {OBJECTIVES[name].help} (see the probe settings)")
        values.append(value)
    return values[0] if len(values) == 1 else values


def front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial (one objective), or the Pareto front (several); none before a trial finished."""
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return []
    return study.best_trials if len(study.directions) > 1 else [study.best_trial]


def representative(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The trial evaluated in full: the best, or the front's with the best final-score formula."""
    def final_formula(trial: optuna.trial.FrozenTrial) -> float:
        score = ProbeRow.from_json(trial.user_attrs.get("chosen", {})).selection_score
        return float("-inf") if score is None else score

    return max(front(study), key=final_formula, default=None)
