"""A study's `methods:` entries, each worked out once, when its file is read, into a `StudyMethod`:
its label, and the unlearning it runs (`Entry`: a method's settings, or a recipe's runs for the
study's kind of target with the entry's overrides). The study step, the sweep's trials and the
report all take it from there; no settings mapping travels further."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lume.config import build, coerce_fields, safe_name, shown
from lume.errors import InputError, LumeError
from lume.stages.unlearning import METHODS, UnlearnConfig, check_fits
from lume.stages.unlearning.recipes import RECIPES, target_kind
from lume.stages.unlearning.recipes.run import Entry
from lume.stages.unlearning.tuned import method_config, tuned_record

MAX_METHODS = 200  # entries of a study's `methods`: checked before each one is
RECIPE_KEYS = ("recipe", "recipe_target")  # a recipe entry's own keys; the rest override its runs
RESERVED = ("target", "oracle")  # the report's own rows


@dataclass(frozen=True)
class StudyMethod:
    """One `methods:` entry worked out against the study's target."""

    label: str  # its folders' and the report's name: `name`, else the recipe's or method's
    entry: Entry  # what it runs, and its step key
    written: dict = field(compare=False)  # the entry as the file gives it, checked (a sweep's identity)
    defaults_tuned_by: dict | None = field(default=None, compare=False)  # lume's tuned defaults it ran with

    @property
    def tuned_by(self) -> dict | None:
        """Where its settings were chosen (a sweep's tuned.yaml says, or lume's tuned defaults for a
        target lume built): the sweep, the trial, the target and the documents tuned on."""
        return self.written.get("tuned_by") or self.defaults_tuned_by

    @property
    def search(self) -> dict:
        """A sweep entry's searched settings: {dotted field: {low, high[, log]} or {choices}}."""
        return self.written.get("search", {})


def study_methods(specs: list, target, path: str | Path = "the study's settings") -> list[StudyMethod]:
    """Each `methods:` entry (a mapping as a file gives it, or a StudyMethod already worked out)
    checked and worked out against TARGET (a TargetConfig): distinct labels, none of the
    report's, every layer it names present in a given target. Entries worked out already (a
    file's, by load_config) are returned as they are."""
    if all(isinstance(spec, StudyMethod) for spec in specs):
        return list(specs)
    if len(specs) > MAX_METHODS:
        raise InputError(path, f"{len(specs)} methods; a study runs at most {MAX_METHODS}", field="methods")
    methods = [_study_method(spec, index, target, path) for index, spec in enumerate(specs)]
    labels = [method.label for method in methods]
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice is not None:
        raise InputError(path, f"two methods are labelled {twice!r}; give each a distinct `name`", field="methods")
    if set(RESERVED) & set(labels):
        raise InputError(path, "a method named target or oracle: those names are the report's; give it another "
                               "`name`", field="methods")
    _check_fits_target(methods, target, path)
    return methods


def _study_method(spec, index: int, target, path) -> StudyMethod:
    written = method_spec(spec, index, path)
    entry = worked_out(written, target, f"methods[{index}]", path)
    kind = entry.target_kind or study_kind(target)
    name = entry.recipe or METHODS[entry.config.method].name
    defaults = tuned_record(name, entry_fields(written)) if kind == "lume" else None
    return StudyMethod(method_label(written), entry, written, defaults)


def method_spec(spec, index: int, path) -> dict:
    """A `methods:` entry's fields, checked: UnlearnConfig fields (`method` and its settings), or a
    `recipe` (with an optional `recipe_target`, and UnlearnConfig fields overriding its runs'),
    plus an optional `name`."""
    where = f"methods[{index}]"
    if not isinstance(spec, dict):
        raise InputError(path, f"expected a mapping with `method` or `recipe`, got {shown(spec)}", field=where)
    name = spec.get("name")
    if spec.get("tuned_by") is not None and not isinstance(spec["tuned_by"], dict):
        raise InputError(path, f"expected a mapping (a sweep's tuned.yaml writes it), got {shown(spec['tuned_by'])}",
                         field=f"{where}.tuned_by")
    if name is not None:
        try:
            safe_name(name)
        except LumeError as error:
            raise InputError(path, str(error), field=f"{where}.name") from None
    fields = entry_fields(spec)
    named = {"name": name} if name else {}
    if spec.get("tuned_by") is not None:
        named["tuned_by"] = spec["tuned_by"]
    if "recipe" in spec:
        return {**_recipe_spec(spec, fields, where, path), **named}
    if "method" not in fields:
        raise InputError(path, "missing (a method's registered name, or give `recipe`)", field=f"{where}.method")
    build(UnlearnConfig, fields, where=where, source=path)
    return {**coerce_fields(UnlearnConfig, fields, where=where, source=path), **named}


def _recipe_spec(spec: dict, overrides: dict, where: str, path) -> dict:
    """A recipe entry: a recipe's name, a known kind of target, its overrides UnlearnConfig fields."""
    if "method" in overrides:
        raise InputError(path, "a recipe names its own method: give `method` or `recipe`, not both",
                         field=f"{where}.method")
    if not isinstance(spec["recipe"], str):
        raise InputError(path, f"expected a recipe's name, got {shown(spec['recipe'])}", field=f"{where}.recipe")
    try:
        RECIPES[spec["recipe"]]
    except LumeError as error:
        raise InputError(path, str(error), field=f"{where}.recipe") from None
    return {"recipe": spec["recipe"], "recipe_target": spec.get("recipe_target", "auto"),
            **coerce_fields(UnlearnConfig, overrides, where=where, source=path)}


def worked_out(written: dict, target, where: str, path) -> Entry:
    """The entry's unlearning for TARGET (a TargetConfig): a built target is a small lume target
    (lume's tuned defaults under the entry's fields), a given one is the kind its name or folder
    says (`recipes.target_kind`)."""
    try:
        if "recipe" not in written:
            return Entry.of_method(method_config(written["method"], entry_fields(written), study_kind(target)))
        asked = written["recipe_target"]
        if asked != "auto":
            target_kind(None, asked)  # a kind lume knows
        if target.model is None and asked not in ("auto", "lume"):
            raise InputError(path, f"{asked}: the settings for the organisers' released target, but this study "
                                   "builds a lume target; give lume (or auto), or a released target as target.model",
                             field=f"{where}.recipe_target")
        model_in, asked = (target.model, asked) if target.model else ("", "lume")
        return Entry.of_recipe(written["recipe"], model_in, entry_fields(written), asked)
    except LumeError as error:
        if isinstance(error, InputError):
            raise
        raise InputError(path, str(error), field=f"{where}.recipe" if "recipe" in written else where) from None


def study_kind(target) -> str:
    """The kind of target a study unlearns (a TargetConfig): a built one is a lume target."""
    return target_kind(target.model) if target.model else "lume"


def method_label(written: dict) -> str:
    """The label of a written entry: its `name`, else the recipe's or the method's registered name
    (a `package.module:Class` reference is labelled by its class's name)."""
    if written.get("name"):
        return written["name"]
    return RECIPES[written["recipe"]].name if "recipe" in written else METHODS[written["method"]].name


def entry_fields(spec: dict) -> dict:
    """A `methods:` entry's UnlearnConfig fields (a recipe's: those overriding its runs)."""
    return {k: v for k, v in spec.items() if k not in ("name", "tuned_by", *RECIPE_KEYS)}


def _check_fits_target(methods: list[StudyMethod], target, path) -> None:
    """Each entry's layers against a given target's config.json, read when the file is (no weights
    loaded), so a layer the model lacks stops the study before its target is evaluated."""
    if target.model is None or not (Path(target.model) / "config.json").is_file():
        return
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(target.model)
    except (OSError, ValueError) as error:
        raise InputError(path, f"{target.model}: cannot read its config.json ({str(error).splitlines()[0]})",
                         field="target.model") from None
    for index, method in enumerate(methods):
        for config in method.entry.runs.values():
            try:
                check_fits(config, model_config)
            except LumeError as error:
                raise InputError(path, str(error), field=f"methods[{index}]") from None
