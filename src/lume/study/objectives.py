"""What a sweep ranks its trials on, from each trial's chosen step's probes: the final-score formula
(one objective; pruners stop poor trials early), or several of the protocol's parts at once (a
multi-objective search whose Pareto front is kept: Optuna's multi-objective samplers). A target
with an oracle adds the oracle's measures: its model probed once on the same probe documents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from lume.errors import InputError, LumeError
from lume.metrics import mia_score
from lume.metrics.oracle import forget_quality, privleak
from lume.results import ProbeRow


@dataclass(frozen=True)
class Objective:
    direction: str  # Optuna's: maximize or minimize
    value: Callable[[ProbeRow, ProbeRow | None], float | None]  # from the trial's row and the oracle's
    help: str
    needs_oracle: bool = False


def _privleak(row: ProbeRow, oracle: ProbeRow | None) -> float | None:
    """|privleak| (MUSE): how far the probes' MIA AUC is from the oracle's, either way."""
    if row.mia_auc is None or oracle is None or oracle.mia_auc is None:
        return None
    leak = privleak(row.mia_auc, oracle.mia_auc)
    return None if leak is None else abs(leak)


def _forget_quality(row: ProbeRow, oracle: ProbeRow | None) -> float | None:
    """The KS p-value between the model's and the oracle's losses on the probe forget documents."""
    if not row.member_losses or oracle is None or not oracle.member_losses:
        return None
    return forget_quality(row.member_losses, oracle.member_losses)


OBJECTIVES = {
    "final": Objective("maximize", lambda row, _: row.selection_score, "the final-score formula on the probes"),
    "forget": Objective("minimize", lambda row, _: row.forget_mean, "the forget probes' mean (lower: more forgotten)"),
    "retain": Objective("maximize", lambda row, _: row.retain_mean, "the retain probes' mean"),
    "mia": Objective("maximize", lambda row, _: None if row.mia_auc is None else mia_score(row.mia_auc),
                     "the MIA score of the probes (1 − 2|AUC − 0.5|)"),
    "mmlu": Objective("maximize", lambda row, _: row.mmlu_dev, "MMLU dev accuracy"),
    "privleak": Objective("minimize", _privleak, "|privleak| against the oracle, on the probes' MIA AUC",
                          needs_oracle=True),
    "forget_quality": Objective("maximize", _forget_quality, "forget quality against the oracle (KS p-value of the "
                                "probe forget documents' losses)", needs_oracle=True),
}
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)  # Optuna's samplers that cannot search several objectives


def check_objectives(objectives, pruner: str, sampler: str, oracle: bool, path: Path) -> list[str]:
    """OBJECTIVES: ["final"], or distinct names of the other objectives; several need no pruner
    (Optuna prunes single-objective studies only) and a multi-objective sampler; the oracle's
    need a target built with its oracle."""
    if not isinstance(objectives, list) or not objectives or len(set(objectives)) != len(objectives) \
            or not set(objectives) <= set(OBJECTIVES):
        raise InputError(path, f"expected a list of distinct objectives from {', '.join(OBJECTIVES)}, got "
                               f"{objectives!r}", field="objectives")
    against = [name for name in objectives if OBJECTIVES[name].needs_oracle]
    if against and not oracle:
        raise InputError(path, f"{', '.join(against)}: measured against the oracle; build the target with "
                               "`oracle: true`", field="objectives")
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


def needs_oracle(objectives: list[str]) -> bool:
    return any(OBJECTIVES[name].needs_oracle for name in objectives)


def trial_values(row: ProbeRow, objectives: list[str], oracle: ProbeRow | None = None) -> float | list[float]:
    """The trial's value(s) from its chosen step's probes (and the oracle's, on the same probe
    documents); an objective the probes lack fails it."""
    values = []
    for name in objectives:
        value = OBJECTIVES[name].value(row, oracle)
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
