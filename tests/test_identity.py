"""Which settings key a result: every field of every keyed settings type is checked, so a new
field cannot be forgotten. A cosmetic field (decides=False) keeps the key; any other changes it;
a field at its default is left out (a new option keeps old keys), so every default is pinned in
tests/defaults.json and a changed one needs `IDENTITY_VERSION` raised.

Re-pin after adding fields (or, with the version raised, after changing a default):
`LUME_PIN_DEFAULTS=1 python -m pytest tests/test_identity.py`."""

import copy
import dataclasses
import json
import os
import typing
from pathlib import Path

import pytest

from lume.config import IDENTITY_VERSION, build, default_of, identity
from lume.stages.attacks import AttackConfig
from lume.stages.attacks import step_key as attack_key
from lume.stages.evaluation import SECTIONS, EvalConfig
from lume.stages.evaluation import step_key as evaluation_key
from lume.stages.target import MemorizeConfig, target_key
from lume.stages.unlearning import METHODS, UnlearnConfig
from lume.stages.unlearning import step_key as unlearning_key
from lume.stages.unlearning.merge import MergeConfig

PINNED = Path(__file__).parent / "defaults.json"
# each keyed settings type, as its stage keys it
KEYED = {MemorizeConfig: target_key, UnlearnConfig: unlearning_key, EvalConfig: evaluation_key,
         AttackConfig: lambda config: attack_key(config, ["relearn"]), MergeConfig: identity}
# deciding fields a stage's key takes from elsewhere, and why
ELSEWHERE = {(MemorizeConfig, "data_dir"): "the data's fingerprint stands for the folder"}
# a changed value where the type alone gives none
CANDIDATES = {"method_settings": {"beta": 0.2}, "sections": ["extraction"], "section": {"mia": {"batch_size": 8}},
              "modules": ["mlp"],
              "also_train": ["lm_head"], "layers": [-1], "task_max_tokens": {"Task2": 100}, "device": "cpu"}


def _settings_types() -> dict[str, type]:
    """Every settings dataclass a keyed one holds, by name, and each of lume's methods' and evaluation
    sections' settings."""
    found, pending = {}, [*KEYED, *(m.Settings for m in METHODS.values() if m.__module__.startswith("lume.")),
                          *(s.Settings for s in SECTIONS.values() if s.__module__.startswith("lume."))]
    while pending:
        cls = pending.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        for field in dataclasses.fields(cls):
            value = default_of(field)
            if dataclasses.is_dataclass(value):
                pending.append(type(value))
    return found


def _defaults() -> dict[str, dict[str, str]]:
    return {name: {field.name: repr(default_of(field)) for field in dataclasses.fields(cls)}
            for name, cls in sorted(_settings_types().items())}


def test_every_default_is_pinned_and_a_changed_one_raises_the_identity_version():
    now = {"version": IDENTITY_VERSION, "defaults": _defaults()}
    if os.environ.get("LUME_PIN_DEFAULTS"):
        old = json.loads(PINNED.read_text()) if PINNED.is_file() else {"version": None, "defaults": {}}
        changed = _changed(old["defaults"], now["defaults"])
        assert not changed or old["version"] != IDENTITY_VERSION, f"raise IDENTITY_VERSION first: {changed}"
        PINNED.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(PINNED.read_text())
    changed = _changed(pinned["defaults"], now["defaults"])
    assert not changed, (f"defaults changed ({changed}): what a run at its defaults computes changed, and keys leave "
                         "defaults out: raise lume.config.IDENTITY_VERSION, then re-pin (this file's docstring)")
    missing = [f"{name}.{field}" for name, fields in now["defaults"].items() for field in fields
               if field not in pinned["defaults"].get(name, {})]
    assert not missing, f"new settings fields {missing}: re-pin the defaults (this file's docstring)"
    assert pinned["version"] == IDENTITY_VERSION


def _changed(old: dict, new: dict) -> list[str]:
    return [f"{name}.{field}" for name, fields in old.items() for field, value in fields.items()
            if field in new.get(name, {}) and new[name][field] != value]


def _another_value(cls, field: dataclasses.Field, current):
    """A value of `field`'s type other than `current` (its ranges aside: keys do not check them)."""
    choices = field.metadata.get("choices")
    choices = choices() if callable(choices) else choices
    kind = typing.get_type_hints(cls)[field.name]
    base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
    if choices:
        return next(c for c in choices if c != current)
    if base is bool:
        return not current
    if base in (int, float):
        return (current or 0) + 1
    if field.name in CANDIDATES:
        return CANDIDATES[field.name]
    return (current or "") + "x"


def _changed_instances(cls, instance, path=()):
    """(field path, decides, instance with that field changed) for every leaf field."""
    for field in dataclasses.fields(cls):
        current = getattr(instance, field.name)
        decides = field.metadata.get("decides", True)
        if dataclasses.is_dataclass(current):
            for inner, inner_decides, changed in _changed_instances(type(current), current, (*path, field.name)):
                outer = copy.copy(instance)
                setattr(outer, field.name, changed)
                yield inner, decides and inner_decides, outer
            continue
        changed = copy.copy(instance)
        setattr(changed, field.name, _another_value(cls, field, current))
        yield (*path, field.name), decides, changed


@pytest.mark.parametrize("cls", list(KEYED), ids=lambda cls: cls.__name__)
def test_a_cosmetic_setting_keeps_the_key_and_any_deciding_one_changes_it(cls):
    key_of = KEYED[cls]
    default = cls()
    checked = 0
    for path, decides, changed in _changed_instances(cls, default):
        if len(path) == 1 and (cls, path[0]) in ELSEWHERE:
            decides = False
        same = key_of(changed) == key_of(default)
        assert same != decides, f"{cls.__name__}.{'.'.join(path)}: decides={decides} but the key " \
                                f"{'stayed' if same else 'changed'}"
        checked += 1
    assert checked >= len(dataclasses.fields(cls))


def test_a_field_at_its_default_is_left_out_so_a_new_option_keeps_old_keys():
    assert identity(UnlearnConfig()) == {} and identity(UnlearnConfig(method="gd")) == {"method": "gd"}
    config = build(UnlearnConfig, {"method": "gd", "training": {"learning_rate": 1e-4, "save_every": 5},
                                   "progress": False})
    assert identity(config) == {"method": "gd", "training": {"learning_rate": 1e-4}}
