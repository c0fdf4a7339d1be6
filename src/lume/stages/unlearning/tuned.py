"""lume's defaults for a target lume built (the `lume` kind): each method's and recipe's settings
as a sweep chose them on a target's tuning documents, never on the documents a study reports.

`tuned.yaml` beside this file is that sweep's `RUN/tuned.yaml` (docs/compare.md says which sweep
and how to make it again): each entry names the sweep, its trial, the target, the part and the
documents tuned on. A study or `lume unlearn` on a lume target starts from these, and what a
study or the command line gives goes over them; on a released target (OLMo), a method's own
defaults and the teams' settings hold."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from lume.config import build, coerce_fields, merged
from lume.errors import InputError
from lume.stages.unlearning.methods import METHODS
from lume.stages.unlearning.unlearner import UnlearnConfig

TUNED_FILE = Path(__file__).with_name("tuned.yaml")
TUNED_VARIABLE = "LUME_TUNED_DEFAULTS"  # another sweep's tuned.yaml in its place (another base model's)
STOPS = ("stop_at", "stop_fraction")  # where the tuned run stopped, as a step or a fraction of its schedule
RUN_LENGTH = ("steps", "schedule", *STOPS)  # given, the tuned run's length no longer holds: its stop goes


@dataclass(frozen=True)
class Tuned:
    """One method's or recipe's tuned settings."""

    fields: dict  # UnlearnConfig fields: over a method's defaults, or over a recipe's runs for a lume target
    tuned_by: dict  # where they were chosen: the sweep, its trial, the target, the part and its documents


@functools.cache
def tuned_defaults() -> dict[str, Tuned]:
    """{method's or recipe's registered name: its tuned settings}, read once (from the file
    $LUME_TUNED_DEFAULTS names, if set)."""
    path = Path(os.environ.get(TUNED_VARIABLE) or TUNED_FILE)
    entries = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("methods") or []
    tuned = {}
    for index, entry in enumerate(entries):
        where = f"methods[{index}]"
        name = entry.get("recipe") or entry.get("method")
        if not name or not isinstance(entry.get("tuned_by"), dict):
            raise InputError(path, "expected `method` or `recipe` and `tuned_by` (a sweep's tuned.yaml)", field=where)
        fields = {k: v for k, v in entry.items() if k not in ("name", "tuned_by", "recipe", "recipe_target")}
        if "recipe" not in entry:
            build(UnlearnConfig, fields, where=where, source=path)
        tuned[name] = Tuned(coerce_fields(UnlearnConfig, fields, where=where, source=path), entry["tuned_by"])
    return tuned


def tuned_documents() -> list[str]:
    """Every document any of the tuned defaults was tuned on (sorted ids): a target that leaves them
    out (the demo's) is never scored on them."""
    return sorted({doc for record in tuned_defaults().values() for doc in record.tuned_by.get("documents") or []})


def tuned_fields(name: str, given: dict) -> dict:
    """NAME's tuned fields (none if it was never tuned) under `given` ones: a run length or stop
    given drops the tuned run's stop."""
    tuned = tuned_defaults().get(name)
    if tuned is None:
        return {}
    if any(key in given for key in RUN_LENGTH):
        return {k: v for k, v in tuned.fields.items() if k not in STOPS}
    return tuned.fields


def tuned_record(name: str, given: dict) -> dict | None:
    """Where NAME's settings were chosen, when `given` fields leave any of its tuned ones in force
    (marked as lume's defaults, for a study's report)."""
    record = tuned_defaults().get(name)
    in_force = _leaves(tuned_fields(name, given)) - _leaves(given)
    return {**record.tuned_by, "defaults": True} if record and in_force else None


def _leaves(fields: dict, prefix: str = "") -> set[str]:
    """The dotted names of a nested mapping's values: training.learning_rate, method_settings.beta."""
    return set().union(*(_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
                         for key, value in fields.items()))


def method_config(method: str, given: dict, kind: str) -> UnlearnConfig:
    """METHOD's settings on a target of KIND (see `recipes.target_kind`): on a lume target its tuned
    fields, then `given` (checked UnlearnConfig fields) over them."""
    defaults = UnlearnConfig(method=method)
    if kind == "lume":
        defaults = merged(defaults, tuned_fields(METHODS[method].name, given))
    return merged(defaults, given)
